"""Globs, include/exclude filters and purpose rules."""

from __future__ import annotations

import pytest

from syncd.local.rules import PathFilter, PurposeRule, choose_purpose, glob_matches


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.jsonl", "a.jsonl", True),
        ("*.jsonl", "deep/er/a.jsonl", True),  # no slash: any depth
        ("*.jsonl", "a.jsonl.bak", False),
        ("fine-tune/**/*.jsonl", "fine-tune/a.jsonl", True),  # ** may be zero segments
        ("fine-tune/**/*.jsonl", "fine-tune/x/y/a.jsonl", True),
        ("fine-tune/**/*.jsonl", "other/fine-tune/a.jsonl", False),  # anchored
        ("/top.txt", "top.txt", True),
        ("/top.txt", "sub/top.txt", False),
        ("logs/**", "logs/a/b.txt", True),
        ("logs/**", "logs", True),
        ("logs/**", "logsx/a", False),
        ("a/*/c", "a/b/c", True),
        ("a/*/c", "a/b/x/c", False),
        ("a?.txt", "ab.txt", True),
        ("a?.txt", "a/.txt", False),
        ("[ab]*.txt", "b1.txt", True),
        ("[!ab]*.txt", "b1.txt", False),
        ("[a-c].txt", "b.txt", True),
        ("data (1).txt", "data (1).txt", True),  # regex metacharacters are literal
        ("**", "any/thing", True),
    ],
)
def test_glob_matches(pattern: str, path: str, expected: bool) -> None:
    """Each glob form matches exactly the paths the docs promise."""
    assert glob_matches(pattern, path) is expected


@pytest.mark.parametrize(
    ("include", "exclude", "path", "expected"),
    [
        ((), (), "a.txt", True),
        ((), ("*.tmp",), "x/a.tmp", False),
        ((), ("cache",), "cache/deep/a.txt", False),  # excluded directory covers its files
        ((), ("cache",), "cachex/a.txt", True),
        (("*.jsonl",), (), "a.txt", False),
        (("*.jsonl",), (), "d/a.jsonl", True),
        (("*.jsonl",), ("d/**",), "d/a.jsonl", False),  # exclude beats include
    ],
)
def test_path_filter(
    include: tuple[str, ...], exclude: tuple[str, ...], path: str, expected: bool
) -> None:
    """Files are in scope when included (if includes exist) and not excluded."""
    assert PathFilter(include, exclude).accepts(path) is expected


def test_excluded_directories_are_pruned() -> None:
    """excludes_dir says when a walk may skip a whole directory."""
    f = PathFilter(exclude=("node_modules", "build/**"))
    assert f.excludes_dir("a/node_modules") and f.excludes_dir("build")
    assert not f.excludes_dir("src")


def test_first_matching_rule_decides_the_purpose() -> None:
    """Rules are tried in order; no match falls back to the default purpose."""
    rules = (
        PurposeRule("fine-tune/**/*.jsonl", "fine-tune", 86400),
        PurposeRule("*.jsonl", "batch"),
    )
    assert choose_purpose("fine-tune/x/a.jsonl", rules, "user_data").purpose == "fine-tune"
    assert choose_purpose("fine-tune/x/a.jsonl", rules, "user_data").expires_after == 86400
    assert choose_purpose("b/a.jsonl", rules, "user_data", 7200).purpose == "batch"
    assert choose_purpose("b/a.jsonl", rules, "user_data", 7200).expires_after == 7200
    assert choose_purpose("a.pdf", rules, "assistants").purpose == "assistants"


def _one_at_a_time(include: tuple[str, ...], exclude: tuple[str, ...], path: str) -> bool:
    """PathFilter.accepts spelled out: every glob against the path and each parent."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    if any(glob_matches(p, c) for p in exclude for c in candidates):
        return False
    return not include or any(glob_matches(p, path) for p in include)


GLOBS = ("*.tmp", "cache", "build/**", "a/**/b", "/top", "x?", "[ab]*", "**", "*", "a**b")
PATHS = ("a", "b/x1", "cache/a.txt", "d/cache", "build", "top/y", "s/top", "a/q/b", "f.tmp")


@pytest.mark.parametrize("exclude", [(g,) for g in GLOBS] + [GLOBS[:4], GLOBS[4:7]])
@pytest.mark.parametrize("include", [(), ("*.tmp",), ("a/**/b", "x?"), ("a**b",)])
def test_compiled_filter_agrees_with_each_glob(
    include: tuple[str, ...], exclude: tuple[str, ...]
) -> None:
    """The globs compiled together decide every path as testing them one by one does."""
    path_filter = PathFilter(include, exclude)
    for path in PATHS:
        expected = _one_at_a_time(include, exclude, path)
        assert path_filter.accepts(path) is expected, path
        assert path_filter.excludes_dir(path) is any(glob_matches(p, path) for p in exclude)


def test_globs_match_below_names_with_a_newline() -> None:
    """A name glob matches at any depth, also below a directory whose name holds a newline."""
    assert glob_matches("*.tmp", "odd\nname/a.tmp")
    assert not PathFilter(exclude=("*.tmp",)).accepts("odd\nname/a.tmp")
    assert not PathFilter(exclude=("odd\nname",)).accepts("odd\nname/a.txt")
