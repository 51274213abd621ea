"""The folder walk on real folders: files, links, special files, bad names, hashing."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from syncd.errors import FileChangedError, FolderUnavailableError
from syncd.local.fingerprint import hash_file
from syncd.local.rules import PathFilter
from syncd.local.scan import Scanner
from syncd.state.ledger import LedgerRow


def write(root: Path, rel: str, content: bytes = b"x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def scan(root: Path, rows: dict[str, LedgerRow] | None = None, **kwargs):
    return Scanner(root, PathFilter(), **kwargs).scan(rows or {})


def reasons(result) -> dict[str, tuple[str, bool]]:
    return {p.path: (p.reason, p.error) for p in result.problems}


def test_nested_names_with_spaces_and_unicode(tmp_path: Path) -> None:
    """Paths are relative, '/'-separated, and keep spaces and non-ASCII characters."""
    write(tmp_path, "a.txt", b"abc")
    write(tmp_path, "sub dir/ünï cödé.txt")
    write(tmp_path, "d/e/f/g.jsonl")
    result = scan(tmp_path)
    assert set(result.files) == {"a.txt", "sub dir/ünï cödé.txt", "d/e/f/g.jsonl"}
    assert result.files["a.txt"].size == 3 and result.problems == []


def test_symlinks_are_skipped_with_a_warning(tmp_path: Path) -> None:
    """Without --follow-links a link is reported (not an error) and not mirrored."""
    write(tmp_path, "real.txt")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    result = scan(tmp_path)
    assert set(result.files) == {"real.txt"}
    reason, error = reasons(result)["link.txt"]
    assert "symbolic link skipped" in reason and not error


def test_follow_links_inside_only(tmp_path: Path) -> None:
    """Links inside the folder are followed; outside, dangling and looping ones skipped."""
    root = tmp_path / "root"
    write(root, "d/real.txt", b"12345")
    write(tmp_path, "outside.txt")
    (root / "file-link").symlink_to(root / "d" / "real.txt")
    (root / "dir-link").symlink_to(root / "d")
    (root / "out-link").symlink_to(tmp_path / "outside.txt")
    (root / "dangling").symlink_to(root / "missing")
    (root / "self").symlink_to(root / "self")
    (root / "d" / "up").symlink_to(root)  # a directory loop
    result = scan(root, follow_links_inside=True)
    assert set(result.files) == {"d/real.txt", "file-link", "dir-link/real.txt"}
    assert result.files["file-link"].size == 5
    problems = reasons(result)
    assert "outside the folder" in problems["out-link"][0]
    assert "dangling" in problems["dangling"][0]
    assert "loop" in problems["self"][0]
    assert "loop" in problems["d/up"][0]
    assert "loop" in problems["dir-link/up"][0]
    assert not any(error for _, error in problems.values())


def test_fifo_and_socket_are_skipped_without_opening(tmp_path: Path) -> None:
    """A FIFO (which would block a reader) and a socket are reported and skipped."""
    os.mkfifo(tmp_path / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        write(tmp_path, "ok.txt")
        result = scan(tmp_path)
    finally:
        sock.close()
    assert set(result.files) == {"ok.txt"}
    problems = reasons(result)
    assert "FIFO" in problems["pipe"][0] and "socket" in problems["sock"][0]


def test_non_utf8_name_is_an_error_shown_escaped(tmp_path: Path) -> None:
    """A name that is not UTF-8 is skipped with an escaped, printable path."""
    with open(os.fsencode(tmp_path) + b"/caf\xe9.txt", "wb") as f:
        f.write(b"x")
    write(tmp_path, "ok.txt")
    result = scan(tmp_path)
    assert set(result.files) == {"ok.txt"}
    assert reasons(result) == {
        "caf\\xe9.txt": ("name is not valid UTF-8; rename it to mirror it", True)
    }


def test_unreadable_path_is_uncertain(tmp_path: Path) -> None:
    """A path the OS refuses to stat (here: longer than PATH_MAX) is an error, not a delete."""
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        for _ in range(20):  # 20 * 251 characters: beyond Linux's 4096-byte PATH_MAX
            os.mkdir("d" * 250, dir_fd=fd)
            new = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
    finally:
        os.close(fd)
    write(tmp_path, "ok.txt")
    result = scan(tmp_path)
    assert set(result.files) == {"ok.txt"}
    assert len(result.uncertain) == 1
    (problem,) = result.problems
    assert problem.error and "too long" in problem.reason


def test_missing_root_and_file_root(tmp_path: Path) -> None:
    """A missing folder or a file instead of a folder raises FolderUnavailableError."""
    with pytest.raises(FolderUnavailableError, match="does not exist"):
        scan(tmp_path / "nope")
    with pytest.raises(FolderUnavailableError, match="not a directory"):
        scan(write(tmp_path, "f"))


def test_hashes_only_when_needed(tmp_path: Path) -> None:
    """New paths and size changes are not hashed; touched same-size files are."""
    new = write(tmp_path, "new.txt", b"aaa")
    same = write(tmp_path, "same.txt", b"bbb")
    touched = write(tmp_path, "touched.txt", b"ccc")
    grown = write(tmp_path, "grown.txt", b"dddd")
    st = {p.name: p.stat() for p in (new, same, touched, grown)}

    def row(name: str, sha: str, mtime_delta: int = 0, size: int | None = None) -> LedgerRow:
        s = st[name]
        return LedgerRow(
            name,
            size or s.st_size,
            s.st_mtime_ns - mtime_delta,
            s.st_ino,
            sha,
            "user_data",
            file_id="file-" + name,
        )

    rows = {
        "same.txt": row("same.txt", "cached"),
        "touched.txt": row("touched.txt", "old", mtime_delta=5),
        "grown.txt": row("grown.txt", "old", size=3),
    }
    result = scan(tmp_path, rows)
    assert result.files["new.txt"].sha256 is None
    assert result.files["same.txt"].sha256 == "cached"  # trusted from the ledger
    assert result.files["touched.txt"].sha256 == hashlib.sha256(b"ccc").hexdigest()
    assert result.files["grown.txt"].sha256 is None
    assert result.hashed_bytes == 3


def test_filters_prune_and_select(tmp_path: Path) -> None:
    """Excluded directories and files are not walked or returned."""
    write(tmp_path, "keep/a.jsonl")
    write(tmp_path, "keep/b.tmp")
    write(tmp_path, "node_modules/x.jsonl")
    result = Scanner(tmp_path, PathFilter(exclude=("*.tmp", "node_modules"))).scan({})
    assert set(result.files) == {"keep/a.jsonl"}


def test_scan_paths_below_an_excluded_directory_finds_nothing(tmp_path: Path) -> None:
    """A partial pass given a directory inside an excluded one (a name glob or an
    anchored glob) finds nothing there, as a full walk, which prunes the excluded one."""
    write(tmp_path, "node_modules/pkg/x.jsonl")
    write(tmp_path, "build/out/y.jsonl")
    write(tmp_path, "src/z.jsonl")
    scanner = Scanner(tmp_path, PathFilter(exclude=("node_modules", "build/**")))
    found = scanner.scan_paths(["node_modules/pkg", "build/out", "src"], {})
    assert set(found.files) == {"src/z.jsonl"}
    assert set(scanner.scan({}).files) == {"src/z.jsonl"}


def test_scan_paths_looks_only_at_the_given_paths(tmp_path: Path) -> None:
    """scan_paths examines files and directories named, and ignores missing ones."""
    write(tmp_path, "a.txt")
    write(tmp_path, "d/b.txt")
    write(tmp_path, "d/e/c.txt")
    write(tmp_path, "other.txt")
    result = Scanner(tmp_path, PathFilter()).scan_paths(["a.txt", "d", "gone.txt", "x/y"], {})
    assert set(result.files) == {"a.txt", "d/b.txt", "d/e/c.txt"}


def test_hash_file_detects_change_while_reading(tmp_path: Path) -> None:
    """A file appended to during hashing raises FileChangedError."""
    path = write(tmp_path, "big", b"x" * (3 * 1024 * 1024))
    sha, st = hash_file(path)
    assert sha == hashlib.sha256(b"x" * (3 * 1024 * 1024)).hexdigest() and st.st_size == 3 << 20

    def grow(_n: int) -> None:
        with open(path, "ab") as f:
            f.write(b"y")

    with pytest.raises(FileChangedError):
        hash_file(path, on_chunk=grow)


def test_hash_file_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    """hash_file on a FIFO fails at once instead of waiting for a writer."""
    os.mkfifo(tmp_path / "p")
    with pytest.raises(OSError, match="not a regular file"):
        hash_file(tmp_path / "p")
