"""`syncd pull DEST` from a ledger, end to end: the real command against `syncd serve`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from serverproc import ServerProcess
from synccli import list_remote, local_files, run_syncd, write, write_counts

from syncd.paths import find_ledgers
from syncd.state.ledger import Ledger

# The mechanics of a restore need files whose content the API serves: the folder is
# mirrored with purpose vision (downloadable, and any bytes) against the strict server.
DOWNLOADABLE = ("--purpose", "vision")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write(root, "a.txt", "alpha")
    write(root, "nested/deeper/b.bin", bytes(range(256)) * 300)
    write(root, "with space/ünïcødé näme.txt", "charlie")
    write(root, "big.bin", os.urandom(300_000))
    return root


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def mirrored(server: ServerProcess, folder: Path, state: Path) -> dict[str, bytes]:
    """The folder mirrored once; returns its content (path -> bytes)."""
    result = run_syncd(server, "sync", folder, "--state", state, *DOWNLOADABLE)
    assert result.returncode == 0, result.stderr
    return local_files(folder)


def pull(server: ServerProcess, dest: Path, *args: str | Path, **kw: bool):
    result = run_syncd(server, "pull", dest, *args, **kw)
    print(result.stderr)  # shown when a test fails
    return result


def file_id_of(state: Path, path: str) -> str:
    (ledger_file,) = find_ledgers(state, {})
    with Ledger.open_readonly(ledger_file) as ledger:
        row = ledger.row(path)
    assert row is not None and row.file_id is not None
    return row.file_id


def leftovers(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*") if p.name.startswith(".syncd-")]


def test_lost_folder_comes_back_bit_for_bit_and_second_pull_downloads_nothing(
    server: ServerProcess, folder: Path, state: Path, mirrored: dict[str, bytes], tmp_path: Path
) -> None:
    """The mirrored tree, deleted, is pulled back identical (bytes and mtimes) by naming
    the lost folder; a second pull finds everything there and downloads nothing."""
    mtimes = {p: (folder / p).stat().st_mtime_ns for p in mirrored}
    shutil.rmtree(folder)
    first = pull(server, folder, "--folder", folder, "--state", state)
    assert first.returncode == 0, first.stderr
    assert local_files(folder) == mirrored
    assert {p: (folder / p).stat().st_mtime_ns for p in mirrored} == mtimes
    assert "4 pulled" in first.stderr
    assert leftovers(folder) == []
    server.reset_stats()
    second = pull(server, folder, "--folder", folder, "--state", state)
    assert second.returncode == 0, second.stderr
    assert server.stats()["counts"].get("content", 0) == 0
    assert "0 pulled" in second.stderr
    assert "4 already there" in second.stderr


def test_sync_after_restore_uploads_and_deletes_nothing(
    server: ServerProcess, folder: Path, state: Path, mirrored: dict[str, bytes]
) -> None:
    """Mirroring resumes after a restore in place: the next sync makes no write call."""
    shutil.rmtree(folder)
    assert pull(server, folder, "--folder", folder, "--state", state).returncode == 0
    server.reset_stats()
    result = run_syncd(server, "sync", folder, "--state", state, *DOWNLOADABLE)
    assert result.returncode == 0, result.stderr
    assert write_counts(server) == {"create": 0, "delete": 0}


def test_the_only_ledger_is_used_and_named(
    server: ServerProcess, state: Path, mirrored: dict[str, bytes], tmp_path: Path
) -> None:
    """Without --folder, the state directory's only ledger is used and the command says so."""
    dest = tmp_path / "restored"
    result = pull(server, dest, "--state", state)
    assert result.returncode == 0, result.stderr
    assert "using the only ledger" in result.stderr
    assert local_files(dest) == mirrored


def test_several_ledgers_need_a_choice(
    server: ServerProcess, state: Path, mirrored: dict[str, bytes], tmp_path: Path
) -> None:
    """With two ledgers in the state directory, pull refuses to guess and names them."""
    other = tmp_path / "other"
    write(other, "o.txt", "other")
    assert run_syncd(server, "sync", other, "--state", state).returncode == 0
    result = pull(server, tmp_path / "restored", "--state", state)
    assert result.returncode == 2
    assert "2 ledgers" in result.stderr
    assert "--folder" in result.stderr
    assert not any((tmp_path / "restored").iterdir())


def test_corrupted_blob_is_detected_and_nothing_bad_is_left(
    server: ServerProcess, state: Path, mirrored: dict[str, bytes], tmp_path: Path
) -> None:
    """A remote file whose content changed (same size) fails its hash check: exit 1,
    the file is named, nothing is written at its path, the other files are pulled."""
    blob = server.data_dir / "blobs" / file_id_of(state, "nested/deeper/b.bin")
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))
    dest = tmp_path / "restored"
    result = pull(server, dest, "--state", state)
    assert result.returncode == 1
    assert "nested/deeper/b.bin" in result.stderr
    assert "sha256" in result.stderr
    assert not (dest / "nested/deeper/b.bin").exists()
    assert leftovers(dest) == []
    assert (dest / "a.txt").read_bytes() == mirrored["a.txt"]
    assert "INCOMPLETE" in result.stderr


def test_truncated_blob_is_detected_and_nothing_bad_is_left(
    server: ServerProcess, state: Path, mirrored: dict[str, bytes], tmp_path: Path
) -> None:
    """A remote file cut short mid-stream fails: exit 1, no file and no temp file left."""
    blob = server.data_dir / "blobs" / file_id_of(state, "big.bin")
    with open(blob, "r+b") as handle:
        handle.truncate(100_000)
    dest = tmp_path / "restored"
    result = pull(server, dest, "--state", state)
    assert result.returncode == 1
    assert "big.bin" in result.stderr
    assert not (dest / "big.bin").exists()
    assert leftovers(dest) == []
    assert (dest / "a.txt").read_bytes() == mirrored["a.txt"]


def test_remote_file_deleted_behind_our_back_is_named(
    server: ServerProcess, state: Path, mirrored: dict[str, bytes], tmp_path: Path
) -> None:
    """A tracked file deleted on the remote is reported as gone; the rest is restored."""
    file_id = file_id_of(state, "a.txt")
    import httpx

    httpx.delete(f"{server.base_url}/files/{file_id}", headers=server.headers()).raise_for_status()
    dest = tmp_path / "restored"
    result = pull(server, dest, "--state", state)
    assert result.returncode == 1
    assert f"failed: a.txt: the remote file {file_id} is gone" in result.stderr
    assert (dest / "big.bin").read_bytes() == mirrored["big.bin"]


def test_a_different_local_file_is_kept_unless_overwrite(
    server: ServerProcess, state: Path, mirrored: dict[str, bytes], tmp_path: Path
) -> None:
    """A file already at a ledger path with other content is kept (exit 1, named);
    --overwrite replaces it with the mirrored version."""
    dest = tmp_path / "restored"
    write(dest, "a.txt", "my newer edit")
    kept = pull(server, dest, "--state", state)
    assert kept.returncode == 1
    assert "kept: a.txt" in kept.stderr
    assert (dest / "a.txt").read_text() == "my newer edit"
    replaced = pull(server, dest, "--state", state, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert local_files(dest) == mirrored


def test_symlinks_planted_in_dest_are_not_followed(
    server: ServerProcess, state: Path, mirrored: dict[str, bytes], tmp_path: Path
) -> None:
    """A link in DEST where a folder or a file goes is neither followed nor replaced:
    nothing is written where the links point, and both paths are named."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch")
    dest = tmp_path / "restored"
    dest.mkdir()
    (dest / "nested").symlink_to(outside)
    (dest / "a.txt").symlink_to(victim)
    result = pull(server, dest, "--state", state)
    assert result.returncode == 1
    assert "nested in the destination is a symbolic link; not followed" in result.stderr
    assert "a.txt: is a symbolic link in the destination" in result.stderr
    assert list(outside.iterdir()) == []
    assert victim.read_text() == "do not touch"
    assert (dest / "a.txt").is_symlink()
    assert (dest / "big.bin").read_bytes() == mirrored["big.bin"]


def test_fifo_and_file_in_the_way_are_named_not_replaced(
    server: ServerProcess, state: Path, mirrored: dict[str, bytes], tmp_path: Path
) -> None:
    """A FIFO at a target is neither opened (no hang) nor replaced; a file where a folder
    must go stops only the files below it."""
    dest = tmp_path / "restored"
    dest.mkdir()
    os.mkfifo(dest / "a.txt")
    (dest / "nested").write_text("a file, not a folder")
    result = pull(server, dest, "--state", state)
    assert result.returncode == 1
    assert "a.txt: is a special file (FIFO, socket or device) in the destination" in result.stderr
    assert "nested in the destination is a file, not a directory" in result.stderr
    assert (dest / "nested").read_text() == "a file, not a folder"
    assert (dest / "big.bin").read_bytes() == mirrored["big.bin"]


def test_permission_denied_names_the_file_and_leaves_nothing(
    server: ServerProcess, state: Path, mirrored: dict[str, bytes], tmp_path: Path
) -> None:
    """A folder in DEST that cannot be written: that file fails with a clear line, the
    others are pulled (run without root's permission override)."""
    dest = tmp_path / "restored"
    (dest / "nested" / "deeper").mkdir(parents=True)
    (dest / "nested" / "deeper").chmod(0o555)
    try:
        result = pull(server, dest, "--state", state, obey_file_modes=True)
    finally:
        (dest / "nested" / "deeper").chmod(0o755)
    assert result.returncode == 1
    assert "failed: nested/deeper/b.bin: cannot write: Permission denied" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (dest / "nested/deeper/b.bin").exists()
    assert (dest / "a.txt").read_bytes() == mirrored["a.txt"]


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 64 KiB tmpfs (needs mount rights: skipped where the sandbox has none)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_disk_full_names_the_file_and_leaves_no_partial_file(
    server: ServerProcess, state: Path, mirrored: dict[str, bytes], tiny_disk: Path
) -> None:
    """On a full disk the pull stops with a line naming the file and the reason; no
    partial file or temp file is left; a rerun with room finishes the job."""
    dest = tiny_disk / "restored"
    result = pull(server, dest, "--state", state, "--concurrency", "1")
    assert result.returncode == 1
    assert "big.bin: cannot write: No space left on device" in result.stderr
    assert "stopped early (no space left on device in the destination)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (dest / "big.bin").exists()
    assert leftovers(dest) == []
    for path, content in local_files(dest).items():
        assert mirrored[path] == content  # whatever landed is whole
    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_disk)], check=True)
    rerun = pull(server, dest, "--state", state)
    assert rerun.returncode == 0, rerun.stderr
    assert local_files(dest) == mirrored


def test_pull_into_a_file_is_a_clear_error(
    server: ServerProcess, state: Path, mirrored: dict[str, bytes], tmp_path: Path
) -> None:
    """DEST that is a regular file: one line, no traceback."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = pull(server, not_a_dir, "--state", state)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("syncd: destination")
    assert "Traceback" not in result.stderr


def test_listing_is_not_needed_for_a_ledger_pull(
    server: ServerProcess, state: Path, mirrored: dict[str, bytes], tmp_path: Path
) -> None:
    """A ledger pull fetches exactly the tracked ids: no list call, one download each."""
    server.reset_stats()
    result = pull(server, tmp_path / "restored", "--state", state)
    assert result.returncode == 0, result.stderr
    counts = server.stats()["counts"]
    assert counts.get("list", 0) == 0
    assert counts.get("content", 0) == len(mirrored) == len(list_remote(server))


def test_pull_into_a_folder_a_daemon_mirrors_is_refused(
    server: ServerProcess, folder: Path, state: Path, mirrored: dict[str, bytes]
) -> None:
    """While `syncd run` mirrors the folder, a pull into it is refused (the daemon would
    delete the remote copies of what is not back yet); once stopped, the pull works."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_run_support import DaemonProcess

    (folder / "a.txt").unlink()
    before = write_counts(server)
    with DaemonProcess(server, folder, state, *DOWNLOADABLE, "--max-delete", "0").start_ready():
        refused = pull(server, folder, "--folder", folder, "--state", state)
        assert refused.returncode == 1
        assert "being mirrored" in refused.stderr and "stop it first" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not (folder / "a.txt").exists()
    assert write_counts(server)["delete"] == before["delete"]  # the guard held the delete
    done = pull(server, folder, "--folder", folder, "--state", state)
    assert done.returncode == 0, done.stderr
    assert local_files(folder) == mirrored
