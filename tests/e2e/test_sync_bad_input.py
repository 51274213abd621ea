"""`syncd sync` with bad input: one clear line naming the file, the others still sync,
never a traceback; exit 1 when a file that should be mirrored could not be."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from serverproc import ServerProcess
from synccli import list_remote, remote_files, run_syncd, sync_json, write, write_counts


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write(root, "good.txt", "fine")
    return root


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def sync(server: ServerProcess, folder: Path, state: Path, *args: str, **kwargs):
    return run_syncd(server, "sync", folder, "--state", state, *args, **kwargs)


def lines_about(stderr: str, name: str) -> list[str]:
    return [line for line in stderr.splitlines() if name in line and line.startswith("syncd:")]


def assert_clean(stderr: str) -> None:
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: write(tmp, "a-file", "x"), "is not a directory"),
    ],
)
def test_bad_folder_is_a_usage_error(
    server: ServerProcess, tmp_path: Path, state: Path, make, message: str
) -> None:
    """A missing folder or a file given as the folder: exit 2 with one line."""
    result = sync(server, make(tmp_path), state)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr


def test_state_inside_the_folder_is_refused(server: ServerProcess, folder: Path) -> None:
    """--state inside the mirrored folder is a usage error."""
    result = sync(server, folder, folder / ".state")
    assert result.returncode == 2 and "inside the mirrored folder" in result.stderr


def test_fifo_is_skipped_without_blocking(server: ServerProcess, folder: Path, state: Path) -> None:
    """A FIFO is reported once and skipped (never opened); the rest syncs; exit 0."""
    os.mkfifo(folder / "pipe")
    result = sync(server, folder, state)
    assert result.returncode == 0, result.stderr
    assert lines_about(result.stderr, "pipe") == ["syncd: skipped: pipe: FIFO (named pipe) skipped"]
    assert remote_files(server) == {"good.txt": b"fine"}


def test_non_utf8_name_is_reported_escaped(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """A non-UTF-8 name cannot be a remote filename: one escaped line, exit 1."""
    with open(os.fsencode(folder) + b"/bad-\xff-name.txt", "wb") as f:
        f.write(b"x")
    result = sync(server, folder, state)
    assert result.returncode == 1
    (line,) = lines_about(result.stderr, "bad-")
    assert "bad-\\xff-name.txt" in line and "not valid UTF-8" in line
    assert_clean(result.stderr)
    assert remote_files(server) == {"good.txt": b"fine"}


def test_links_loops_and_outside_targets(
    server: ServerProcess, tmp_path: Path, folder: Path, state: Path
) -> None:
    """Links out of the folder, dangling links and loops are skipped with a reason each."""
    write(tmp_path, "outside.txt", "secret outside")
    write(folder, "inner/real.txt", "inner")
    (folder / "out").symlink_to(tmp_path / "outside.txt")
    (folder / "dangling").symlink_to(folder / "nope")
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "inner" / "up").symlink_to(folder)
    (folder / "in-link.txt").symlink_to(folder / "inner" / "real.txt")
    plain = sync(server, folder, state)
    assert plain.returncode == 0, plain.stderr
    assert "symbolic link skipped" in lines_about(plain.stderr, "out")[0]
    followed = sync(server, folder, state, "--follow-links")
    assert followed.returncode == 0, followed.stderr
    assert "outside the folder" in lines_about(followed.stderr, "syncd: skipped: out:")[0]
    assert "dangling" in lines_about(followed.stderr, "syncd: skipped: dangling:")[0]
    assert "loop" in lines_about(followed.stderr, "syncd: skipped: loop:")[0]
    assert "loop" in lines_about(followed.stderr, "syncd: skipped: inner/up:")[0]
    assert set(remote_files(server)) == {"good.txt", "inner/real.txt", "in-link.txt"}


def test_over_size_file_fails_once_and_waits_for_a_change(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """A file over the limit is refused before upload and not retried until it changes."""
    env = {"SYNCD_MAX_FILE_BYTES": "100"}
    write(folder, "big.bin", b"x" * 101)
    first = sync(server, folder, state, env=env)
    assert first.returncode == 1
    (line,) = lines_about(first.stderr, "big.bin")
    assert "syncd: failed: big.bin: 101 bytes is over the 100-byte limit" in line
    server.reset_stats()
    again = sync(server, folder, state, env=env)
    assert again.returncode == 1 and write_counts(server) == {"create": 0, "delete": 0}
    assert "failed earlier, unchanged since: big.bin" in again.stderr
    write(folder, "big.bin", b"x" * 100)
    fixed = sync(server, folder, state, env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert remote_files(server)["big.bin"] == b"x" * 100


def test_sparse_file_over_512_mb(server: ServerProcess, folder: Path, state: Path) -> None:
    """A (sparse) file over the API's 512 MB is refused without reading it."""
    with open(folder / "huge.bin", "wb") as f:
        f.truncate(512 * 1000 * 1000 + 1)
    result = sync(server, folder, state)
    assert result.returncode == 1
    assert "over the 512 MB limit" in lines_about(result.stderr, "huge.bin")[0]
    assert set(remote_files(server)) == {"good.txt"}


def test_control_characters_in_names_are_printed_escaped(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """Names holding terminal escapes (clear screen, a window title, a bidi override):
    the --dry-run plan, the failure line and the next pass's "failed earlier" line show
    them escaped; no syncd line carries a control character. (The file still mirrors.)"""
    hostile = "\x1b[2J\x1b]0;owned\x07\u202e"
    shown = "\\x1b[2J\\x1b]0;owned\\x07\\u202e"
    write(folder, f"evil{hostile}.txt", "x")
    write(folder, f"empty{hostile}.txt", b"")  # refused: a failure line naming it

    def assert_no_control_characters(text: str) -> None:
        lines = [line for line in text.splitlines() if not line.startswith("{")]  # JSON logs
        assert not [line for line in lines if any(c in line for c in "\x1b\x07\u202e")], text

    dry = sync(server, folder, state, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"upload   evil{shown}.txt  (new file)" in dry.stdout.splitlines()
    assert_no_control_characters(dry.stdout + dry.stderr)
    first = sync(server, folder, state)
    assert first.returncode == 1
    assert lines_about(first.stderr, "empty") == [
        f"syncd: failed: empty{shown}.txt: empty file (0 bytes); the Files API refuses empty files"
    ]
    assert_no_control_characters(first.stdout + first.stderr)
    again = sync(server, folder, state)
    assert again.returncode == 1
    assert lines_about(again.stderr, "empty") == [
        f"syncd: failed earlier, unchanged since: empty{shown}.txt: empty file (0 bytes); the "
        "Files API refuses empty files"
    ]
    assert_no_control_characters(again.stdout + again.stderr)
    assert_clean(again.stderr)
    assert len(remote_files(server)) == 2  # good.txt and evil...txt


def test_invalid_jsonl_for_fine_tune(server: ServerProcess, folder: Path, state: Path) -> None:
    """Invalid JSONL under a fine-tune purpose names the file and the first bad line."""
    write(folder, "train.jsonl", '{"messages": []}\n{"messages": [}\n')
    write(folder, "ok.jsonl", '{"messages": []}\n')
    write(folder, "notes.txt", "not jsonl")
    os.remove(folder / "good.txt")
    result = sync(server, folder, state, "--purpose", "fine-tune")
    assert result.returncode == 1
    (line,) = lines_about(result.stderr, "train.jsonl")
    assert "line 2 is not valid JSON" in line
    assert "needs a .jsonl file" in lines_about(result.stderr, "notes.txt")[0]
    assert set(remote_files(server)) == {"ok.jsonl"}


def test_empty_file(server: ServerProcess, folder: Path, state: Path) -> None:
    """An empty file is refused with a clear reason (the API rejects it)."""
    write(folder, "empty.txt", b"")
    data = sync_json(server, folder, state)
    assert data["_exit"] == 1
    assert data["failed"] == [
        {
            "path": "empty.txt",
            "action": "upload",
            "reason": "empty file (0 bytes); the Files API refuses empty files",
            "permanent": True,
        }
    ]
    assert set(remote_files(server)) == {"good.txt"}


def test_unreadable_file_and_directory(server: ServerProcess, folder: Path, state: Path) -> None:
    """Files and directories the process may not read: one line each, nothing deleted.

    The command runs without root's permission override, so ``chmod 000`` denies it.
    """
    write(folder, "locked-dir/inside.txt", "inside")
    assert sync(server, folder, state, obey_file_modes=True).returncode == 0
    write(folder, "secret.txt", "no access")
    (folder / "secret.txt").chmod(0)
    (folder / "locked-dir").chmod(0)
    try:
        result = sync(server, folder, state, obey_file_modes=True)
    finally:
        (folder / "locked-dir").chmod(0o755)
    assert result.returncode == 1
    assert_clean(result.stderr)
    (secret,) = lines_about(result.stderr, "secret.txt")
    assert "Permission denied" in secret
    (locked,) = lines_about(result.stderr, "locked-dir")
    assert "cannot read directory: Permission denied" in locked
    names = {f["filename"] for f in list_remote(server)}
    assert names == {"good.txt", "locked-dir/inside.txt"}  # not deleted, not uploaded


def test_dangling_symlink_to_be_followed(server: ServerProcess, folder: Path, state: Path) -> None:
    """A followed link whose target vanished is skipped with a line, not an error."""
    (folder / "gone").symlink_to(folder / "never-was.txt")
    result = sync(server, folder, state, "--follow-links")
    assert result.returncode == 0
    assert "dangling symbolic link skipped" in lines_about(result.stderr, "gone")[0]
