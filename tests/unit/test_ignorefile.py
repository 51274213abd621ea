""".syncdignore files: gitignore rules in the folder, read by the scan (real folders under
tmp_path) and honoured by the planner."""

from __future__ import annotations

from pathlib import Path

from syncd.local.ignorefile import IGNORE_FILE, MAX_IGNORE_FILE_BYTES, compile_ignore, ignore_hint
from syncd.local.rules import PathFilter
from syncd.local.scan import Scanner
from syncd.state.ledger import LedgerRow
from syncd.sync.plan import PlanOptions, Skip, plan


def tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def scanned(root: Path) -> list[str]:
    return sorted(Scanner(root, PathFilter()).scan({}).files)


def test_gitignore_rules_at_the_root_and_in_subfolders(tmp_path: Path) -> None:
    """Patterns, directories, anchors, negation, and a deeper file overriding; the ignore
    files themselves are never listed."""
    tree(
        tmp_path,
        {
            IGNORE_FILE: "# comment\n*.log\nbuild/\n/top-only.txt\n!keep.log\n",
            "a.txt": "",
            "x.log": "",
            "keep.log": "",
            "top-only.txt": "",
            "sub/top-only.txt": "",
            "build/out.bin": "",
            "sub/build/deep.bin": "",
            f"sub/{IGNORE_FILE}": "*.csv\n!again.log\n",
            "sub/data.csv": "",
            "sub/again.log": "",
            "sub/other.log": "",
            "other/data.csv": "",
        },
    )
    assert scanned(tmp_path) == [
        "a.txt",
        "keep.log",
        "other/data.csv",
        "sub/again.log",
        "sub/top-only.txt",
    ]


def test_a_file_below_an_ignored_directory_cannot_come_back(tmp_path: Path) -> None:
    """As in git: `!` cannot re-include a file whose directory is ignored (not walked)."""
    tree(tmp_path, {IGNORE_FILE: "cache/\n!cache/wanted.txt\n", "cache/wanted.txt": ""})
    assert scanned(tmp_path) == []


def test_a_bad_line_is_reported_with_file_and_line_and_skipped(tmp_path: Path) -> None:
    """An invalid pattern names the file and line once; the other lines still apply."""
    tree(tmp_path, {f"sub/{IGNORE_FILE}": "*.tmp2\nfoo\\\n*.bak\n", "sub/a.bak": "", "sub/b": ""})
    scanner = Scanner(tmp_path, PathFilter())
    first = scanner.scan({})
    assert sorted(first.files) == ["sub/b"]
    assert first.warnings == [
        f"sub/{IGNORE_FILE}: line 2: invalid pattern: 'foo\\\\'; line skipped"
    ]
    assert scanner.scan({}).warnings == []  # unchanged: not said again


def test_changes_to_the_ignore_file_apply_at_the_next_scan(tmp_path: Path) -> None:
    """Editing .syncdignore changes what the next scan lists (full and partial)."""
    tree(tmp_path, {IGNORE_FILE: "*.csv\n", "d/a.csv": "", "d/b.txt": ""})
    scanner = Scanner(tmp_path, PathFilter())
    assert sorted(scanner.scan({}).files) == ["d/b.txt"]
    assert sorted(scanner.scan_paths(["d/a.csv"], {}).files) == []
    (tmp_path / IGNORE_FILE).write_text("*.txt\n# longer now\n")
    assert sorted(scanner.scan({}).files) == ["d/a.csv"]
    assert sorted(scanner.scan_paths(["d"], {}).files) == ["d/a.csv"]


def test_an_unreadable_ignore_file_makes_its_folder_uncertain(tmp_path: Path) -> None:
    """A .syncdignore that cannot be read: an error naming it; nothing below is listed,
    and the folder is uncertain (the planner deletes nothing there)."""
    tree(tmp_path, {"ok.txt": "", "big/f.txt": ""})
    (tmp_path / "big" / IGNORE_FILE).write_bytes(b"#" * (MAX_IGNORE_FILE_BYTES + 1))
    result = Scanner(tmp_path, PathFilter()).scan({})
    assert sorted(result.files) == ["ok.txt"]
    (problem,) = result.problems
    assert problem.path == f"big/{IGNORE_FILE}" and problem.error
    assert "larger than" in problem.reason and "big" in result.uncertain


def test_tracked_file_newly_ignored_is_left_alone_remotely(tmp_path: Path) -> None:
    """A mirrored file (or directory) now ignored is excluded, not deleted."""
    tree(tmp_path, {IGNORE_FILE: "*.log\nold/\n", "a.log": "x", "old/b.txt": "y"})
    result = Scanner(tmp_path, PathFilter()).scan({})
    ledger = {
        p: LedgerRow(p, 1, 1, 1, "h", "user_data", f"file-{p}", 1) for p in ("a.log", "old/b.txt")
    }
    the_plan = plan(result.files, ledger, None, now=1.0, options=PlanOptions(ignored=result.ignore))
    assert the_plan.actions == ()
    assert dict(the_plan.skipped) == {"a.log": Skip.EXCLUDED, "old/b.txt": Skip.EXCLUDED}


def test_compiled_rules_decide_like_gitignore() -> None:
    """The quick combined test never changes a decision: only matching paths are decided."""
    compiled = compile_ignore(IGNORE_FILE, b"*.o\n/only\nlogs/**/x\n!keep.o\n")
    assert compiled.decide("a/b.o", False) is True
    assert compiled.decide("keep.o", False) is False
    assert compiled.decide("only", False) is True and compiled.decide("a/only", False) is None
    assert compiled.decide("logs/1/2/x", False) is True and compiled.decide("b.txt", False) is None


def test_hints_on_ignore_files() -> None:
    """A hint on a .syncdignore re-examines its folder's subtree (the root: everything)."""
    assert ignore_hint(f"a/b/{IGNORE_FILE}") == "a/b/"
    assert ignore_hint(IGNORE_FILE) == ""
    assert ignore_hint("a/notes.txt") is None
