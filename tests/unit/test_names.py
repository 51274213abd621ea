"""Unit tests for syncd.restore.names: untrusted remote filenames become safe relative paths."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.api import RemoteFile
from syncd.errors import RefusedName
from syncd.restore.names import (
    MAX_NAME_BYTES,
    check_relative,
    clean_remote_name,
    is_inside,
    place_remote_files,
    printable,
    shorten_component,
    with_id_suffix,
)


def remote(file_id: str, filename: str, created_at: int = 1000) -> RemoteFile:
    return RemoteFile(id=file_id, filename=filename, bytes=1, created_at=created_at, purpose="x")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("a/b/c.txt", "a/b/c.txt"),
        ("../../x", "x"),
        ("/tmp/x", "tmp/x"),
        ("a/../../b", "a/b"),
        ("./a/./b", "a/b"),
        ("a//b", "a/b"),
        ("..\\..\\win.txt", "win.txt"),
        ("dir\\file.txt", "dir/file.txt"),
        ("nul\x00byte", "nul_byte"),
        ("line\nbreak\r", "line_break_"),
        ("esc\x1b[31mred\x7f", "esc_[31mred_"),
        ("\u202etxt.exe", "_txt.exe"),
        ("café/naïve ü.txt", "café/naïve ü.txt"),
        ("with space .txt", "with space .txt"),
    ],
)
def test_clean_remote_name_table(name: str, expected: str) -> None:
    """Each hostile name maps to the documented safe relative path."""
    assert clean_remote_name(name, "file-abc").path == expected


@pytest.mark.parametrize("name", ["", "/", "..", ".", "../..", "/../", "\\..\\"])
def test_nothing_left_is_named_by_id(name: str) -> None:
    """A name with nothing usable left is named by the file id, and says so."""
    cleaned = clean_remote_name(name, "file-abc")
    assert cleaned.path == "file-abc"
    assert any("file id" in note for note in cleaned.notes)


def test_notes_say_what_changed() -> None:
    """Every kind of change is described, and a clean name has no notes."""
    assert clean_remote_name("ok/name.txt", "f").notes == ()
    notes = clean_remote_name("/a/../b\x01\\c", "f").notes
    joined = " ".join(notes)
    assert "absolute" in joined
    assert "'..'" in joined
    assert "control" in joined
    assert "backslash" in joined


def test_long_component_is_shortened_keeping_extension_and_distinct() -> None:
    """A 300-byte name fits in 255 bytes, keeps .txt, and two such names stay distinct."""
    a = clean_remote_name("a" * 296 + ".txt", "f").path
    b = clean_remote_name("a" * 297 + ".txt", "f").path
    assert len(a.encode()) <= MAX_NAME_BYTES
    assert a.endswith(".txt")
    assert a != b


def test_shorten_respects_utf8_boundaries() -> None:
    """Shortening a multi-byte name never splits a character."""
    name = "é" * 200  # 400 bytes
    short = shorten_component(name)
    assert len(short.encode("utf-8")) <= MAX_NAME_BYTES
    short.encode("utf-8").decode("utf-8")  # would raise on a split character


def test_overlong_path_is_refused() -> None:
    """A path longer than any filesystem allows is refused with a reason."""
    with pytest.raises(RefusedName, match="longer"):
        clean_remote_name("/".join(["d" * 200] * 30), "f")


@given(st.text(min_size=0, max_size=400))
def test_any_name_stays_inside(name: str) -> None:
    """Whatever the remote name, the cleaned path is relative, has no '..' and stays
    inside a root, and every component fits the filesystem."""
    try:
        path = clean_remote_name(name, "file-x").path
    except RefusedName:
        return
    assert not path.startswith("/")
    parts = path.split("/")
    assert all(p not in ("", ".", "..") for p in parts)
    assert all(len(p.encode("utf-8")) <= MAX_NAME_BYTES for p in parts)
    assert "\x00" not in path
    assert is_inside("/dest", path)
    assert posixpath.normpath("/dest/" + path).startswith("/dest/")


def test_check_relative_refuses_instead_of_repairing() -> None:
    """Ledger paths are refused, never repaired, when unsafe."""
    assert check_relative("a/b c/d.txt") == "a/b c/d.txt"
    assert check_relative("line\nbreak") == "line\nbreak"  # legal on Linux
    for bad in ("", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "nul\x00", "x" * 256):
        with pytest.raises(RefusedName):
            check_relative(bad)


def test_is_inside() -> None:
    """Lexical containment: the root itself, parents and absolute paths are outside."""
    assert is_inside("/dest", "a/b")
    assert not is_inside("/dest", "")
    assert not is_inside("/dest", "..")
    assert not is_inside("/dest", "a/../../x")
    assert not is_inside("/dest", "/etc/passwd")
    assert not is_inside("/dest", "../dest2/x")


def test_with_id_suffix_keeps_extension_and_fits() -> None:
    """The id goes before the extension; a long name still fits in 255 bytes."""
    assert with_id_suffix("dir/report.pdf", "file-abc") == "dir/report (file-abc).pdf"
    assert with_id_suffix(".bashrc", "file-abc") == ".bashrc (file-abc)"
    assert with_id_suffix("x.pdf", "file-abc", 2) == "x (file-abc 2).pdf"
    long = with_id_suffix("n" * 255, "file-abc")
    assert len(long.encode()) <= MAX_NAME_BYTES
    assert long.endswith("(file-abc)")


def test_same_name_twice_newest_keeps_plain_name() -> None:
    """Two remote files with one name: the newest keeps it, the older gets its id."""
    placed, refused = place_remote_files(
        [remote("file-old", "dup.txt", 100), remote("file-new", "dup.txt", 200)]
    )
    assert refused == []
    paths = {p.file.id: p.path for p in placed}
    assert paths == {"file-new": "dup.txt", "file-old": "dup (file-old).txt"}
    old = next(p for p in placed if p.file.id == "file-old")
    assert any("taken" in note for note in old.notes)


def test_names_that_clean_to_the_same_path_are_kept_apart() -> None:
    """'/x', '../x' and 'x' all clean to 'x'; each still gets its own path."""
    placed, _ = place_remote_files(
        [remote("file-1", "/x", 3), remote("file-2", "../x", 2), remote("file-3", "x", 1)]
    )
    paths = [p.path for p in placed]
    assert len(set(paths)) == 3
    assert "x" in paths


def test_file_named_like_a_directory_yields() -> None:
    """A file 'a' and a file 'a/b': the directory wins, the file gets its id."""
    placed, _ = place_remote_files([remote("file-1", "a", 5), remote("file-2", "a/b", 1)])
    paths = {p.file.id: p.path for p in placed}
    assert paths == {"file-1": "a (file-1)", "file-2": "a/b"}


def test_placement_is_deterministic() -> None:
    """The same listing always gives the same, distinct paths."""
    files = [remote(f"file-{i}", "same.txt", 100) for i in range(5)]
    first = {p.file.id: p.path for p in place_remote_files(files)[0]}
    again = {p.file.id: p.path for p in place_remote_files(list(files))[0]}
    assert first == again
    assert len(set(first.values())) == 5


def test_same_second_ties_follow_the_listing_order() -> None:
    """Created in the same second: the first listed (the newest, in the API's default
    descending order) keeps the plain name, whatever the ids."""
    placed, _ = place_remote_files([remote("file-z", "n.txt", 100), remote("file-a", "n.txt", 100)])
    assert {p.file.id: p.path for p in placed}["file-z"] == "n.txt"


def test_refused_names_are_reported() -> None:
    """An over-long path is refused and listed with its reason, the others are placed."""
    placed, refused = place_remote_files(
        [remote("file-ok", "ok.txt"), remote("file-long", "/".join(["d" * 200] * 30))]
    )
    assert [p.file.id for p in placed] == ["file-ok"]
    assert [r.file.id for r in refused] == ["file-long"]
    assert "longer" in refused[0].reason


def test_printable_escapes_control_characters() -> None:
    """A name shown on a terminal cannot carry escape sequences or newlines."""
    shown = printable("a\x1b[31m\nb\u202e")
    assert "\x1b" not in shown
    assert "\n" not in shown
    assert "\u202e" not in shown
    assert shown.startswith("a\\x1b[31m\\nb")
