"""Hint vocabulary, ignore globs and the kernel-limit messages of syncd.watch."""

from __future__ import annotations

import errno

import pytest

from syncd.local.rules import DEFAULT_IGNORES, is_ignored_name
from syncd.local.watch.aggregator import hint_covers, is_subtree_hint
from syncd.local.watch.watcher import describe_limit_error


def test_directory_hint_covers_everything_under_it() -> None:
    """'dir/' covers the directory path and every path below it, nothing beside it."""
    assert is_subtree_hint("data/raw/")
    assert hint_covers("data/raw/", "data/raw/a.jsonl")
    assert hint_covers("data/raw/", "data/raw/deep/b.jsonl")
    assert hint_covers("data/raw/", "data/raw")
    assert not hint_covers("data/raw/", "data/rawer/a.jsonl")
    assert not hint_covers("data/raw/", "data/a.jsonl")


def test_file_hint_covers_only_itself() -> None:
    """A file hint is exact: no prefix matching."""
    assert not is_subtree_hint("a.txt")
    assert hint_covers("a.txt", "a.txt")
    assert not hint_covers("a", "a/b.txt")


@pytest.mark.parametrize(
    "name", ["x.swp", ".notes.txt.swp", "report.docx~", ".#draft.md", "up.tmp", ".~lock.a.odt#"]
)
def test_default_ignores_match_editor_temp_files(name: str) -> None:
    """Vim, Emacs, generic and LibreOffice temp names are ignored by default."""
    assert is_ignored_name(name, DEFAULT_IGNORES)


@pytest.mark.parametrize("name", ["data.jsonl", "swp", "tmp.jsonl", "a.tmp.jsonl", "lock"])
def test_default_ignores_spare_real_files(name: str) -> None:
    """Ordinary names, even ones containing 'tmp' or 'swp', are not ignored."""
    assert not is_ignored_name(name, DEFAULT_IGNORES)


def test_ignore_globs_are_case_sensitive() -> None:
    """Matching is case-sensitive, as Linux file names are."""
    assert not is_ignored_name("UP.TMP", DEFAULT_IGNORES)


def test_watch_limit_message_names_the_sysctl() -> None:
    """ENOSPC from inotify_add_watch is explained with fs.inotify.max_user_watches."""
    message = describe_limit_error(OSError(errno.ENOSPC, "x"), "/srv/data")
    assert message is not None
    assert "fs.inotify.max_user_watches" in message
    assert "/srv/data" in message


def test_instance_limit_message_names_the_sysctl() -> None:
    """EMFILE from inotify_init is explained with fs.inotify.max_user_instances."""
    message = describe_limit_error(OSError(errno.EMFILE, "x"), "/srv/data")
    assert message is not None
    assert "fs.inotify.max_user_instances" in message


def test_other_errors_are_not_limit_errors() -> None:
    """Errors that are not kernel limits get no sysctl advice."""
    assert describe_limit_error(OSError(errno.ENOENT, "x"), "/srv/data") is None
