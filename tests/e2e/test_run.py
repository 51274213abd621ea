"""`syncd run` mirrors changes as they happen: the real daemon against `syncd serve`."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

from serverproc import ServerProcess
from test_run_support import (
    DaemonProcess,
    list_remote,
    local_contents,
    remote_contents,
    remote_names,
    run_command,
    wait_for,
    write,
    write_counts,
)


def test_dropped_file_is_uploaded(server: ServerProcess, tmp_path: Path) -> None:
    """A file dropped into the watched folder appears remotely with its content."""
    folder = tmp_path / "data"
    folder.mkdir()
    with DaemonProcess(server, folder, tmp_path / "state").start_ready():
        write(folder, "a.txt", "hello")
        wait_for(lambda: remote_contents(server) == {"a.txt": b"hello"}, what="a.txt uploaded")


def test_edit_replaces_and_deletes_old_version(server: ServerProcess, tmp_path: Path) -> None:
    """An edited file is uploaded again and the old remote version is deleted."""
    folder = tmp_path / "data"
    write(folder, "a.txt", "v1")
    with DaemonProcess(server, folder, tmp_path / "state").start_ready():
        old_id = wait_for(lambda: list_remote(server), what="a.txt")[0]["id"]
        write(folder, "a.txt", "version two")
        wait_for(lambda: remote_contents(server) == {"a.txt": b"version two"}, what="replace")
        assert old_id not in {f["id"] for f in list_remote(server)}
        assert write_counts(server) == {"create": 2, "delete": 1}


def test_deleted_file_is_deleted_remotely(server: ServerProcess, tmp_path: Path) -> None:
    """A file deleted from the folder is deleted remotely; the others stay."""
    folder = tmp_path / "data"
    write(folder, "a.txt", "a")
    write(folder, "b.txt", "b")
    with DaemonProcess(server, folder, tmp_path / "state").start_ready():
        assert remote_names(server) == ["a.txt", "b.txt"]
        (folder / "a.txt").unlink()
        wait_for(lambda: remote_names(server) == ["b.txt"], what="a.txt deleted")


def test_atomic_save_is_one_upload_of_the_final_name(server: ServerProcess, tmp_path: Path) -> None:
    """Writing a temp file and renaming it over the target uploads the target once."""
    folder = tmp_path / "data"
    write(folder, "doc.txt", "old")
    with DaemonProcess(server, folder, tmp_path / "state").start_ready():
        before = write_counts(server)
        temp = write(folder, "doc.txt.tmp", "new content, saved atomically")
        os.replace(temp, folder / "doc.txt")
        wait_for(  # one copy first: between a replace's upload and its delete there are two
            lambda: (
                remote_names(server) == ["doc.txt"]
                and remote_contents(server) == {"doc.txt": b"new content, saved atomically"}
            ),
            what="the saved content",
        )
        after = write_counts(server)
        assert after["create"] - before["create"] == 1
        assert after["delete"] - before["delete"] == 1  # the old version


def test_lingering_temp_file_is_never_uploaded(server: ServerProcess, tmp_path: Path) -> None:
    """Editor temp names (*.swp, *~, .#*, *.tmp) are ignored by the watcher and scans."""
    folder = tmp_path / "data"
    write(folder, "at-start.tmp", "x")
    with DaemonProcess(server, folder, tmp_path / "state").start_ready():
        for name in (".a.txt.swp", "b.txt~", ".#c.txt", "d.tmp", ".~lock.e.odt#"):
            write(folder, name, "temp")
        write(folder, "real.txt", "real")  # handled no earlier than the temp files
        wait_for(lambda: "real.txt" in remote_names(server), what="real.txt")
        assert remote_names(server) == ["real.txt"]


def test_burst_of_1000_files_is_mirrored_exactly(server: ServerProcess, tmp_path: Path) -> None:
    """1,000 files written at once end as exactly 1,000 remote files, one upload each."""
    folder = tmp_path / "data"
    folder.mkdir()
    with DaemonProcess(server, folder, tmp_path / "state").start_ready():
        for n in range(1000):
            write(folder, f"burst/{n // 100}/file-{n:04}.txt", f"content {n}")
        wait_for(lambda: len(list_remote(server)) >= 1000, deadline=120, what="1,000 files")
        names = remote_names(server)
        assert names == sorted(f"burst/{n // 100}/file-{n:04}.txt" for n in range(1000))
        assert write_counts(server) == {"create": 1000, "delete": 0}


def test_renamed_directory_moves_its_files(server: ServerProcess, tmp_path: Path) -> None:
    """Renaming a directory deletes the old paths remotely and uploads the new ones."""
    folder = tmp_path / "data"
    for n in range(5):
        write(folder, f"old/sub/f{n}.txt", f"file {n}")
    write(folder, "keep.txt", "keep")
    with DaemonProcess(server, folder, tmp_path / "state").start_ready():
        old_ids = {f["id"] for f in list_remote(server) if f["filename"].startswith("old/")}
        assert len(old_ids) == 5
        (folder / "old").rename(folder / "new")
        expected = sorted(["keep.txt"] + [f"new/sub/f{n}.txt" for n in range(5)])
        wait_for(lambda: remote_names(server) == expected, what="the renamed directory")
        assert not old_ids & {f["id"] for f in list_remote(server)}
        assert remote_contents(server) == local_contents(folder)


def test_deleted_directory_deletes_its_files(server: ServerProcess, tmp_path: Path) -> None:
    """Deleting a directory deletes every file under it remotely, and nothing else."""
    folder = tmp_path / "data"
    for n in range(6):
        write(folder, f"gone/{n % 2}/f{n}.txt", f"file {n}")
    for n in range(8):
        write(folder, f"stay/f{n}.txt", f"stay {n}")
    with DaemonProcess(server, folder, tmp_path / "state").start_ready():
        assert len(remote_names(server)) == 14
        shutil.rmtree(folder / "gone")
        expected = sorted(f"stay/f{n}.txt" for n in range(8))
        wait_for(lambda: remote_names(server) == expected, what="the directory's files deleted")
        assert write_counts(server)["delete"] == 6


def test_restart_catches_up_on_changes_made_while_stopped(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Changes made while the daemon was stopped are mirrored by the next start."""
    folder = tmp_path / "data"
    write(folder, "edit.txt", "v1")
    write(folder, "delete.txt", "bye")
    daemon = DaemonProcess(server, folder, tmp_path / "state")
    with daemon.start_ready():
        assert remote_names(server) == ["delete.txt", "edit.txt"]
        assert daemon.stop() == 0
    write(folder, "edit.txt", "v2 written while stopped")
    write(folder, "new/added.txt", "added while stopped")
    (folder / "delete.txt").unlink()
    with daemon.start_ready():
        assert remote_contents(server) == local_contents(folder)  # READY=1 after catch-up


def test_sigterm_exits_0_promptly_and_restart_converges(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """SIGTERM in the middle of slow uploads exits 0; the next start converges exactly."""
    server = server_factory(faults={"latency_ms": 400, "routes": ["create"]})
    folder = tmp_path / "data"
    for n in range(60):
        write(folder, f"f{n:02}.txt", f"file {n}")
    daemon = DaemonProcess(server, folder, tmp_path / "state")
    with daemon.start():
        wait_for(lambda: server.stats()["counts"].get("create", 0) >= 8, what="uploads begin")
        assert daemon.stop(signal.SIGTERM, timeout=10) == 0
        daemon.wait_event("stopping")
    server.set_faults(None)
    with daemon.start_ready():
        assert remote_contents(server) == local_contents(folder)


def test_second_signal_exits_at_once(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A second SIGTERM ends the daemon at once with a non-zero code."""
    server = server_factory(faults={"latency_ms": 3000, "routes": ["create"]})
    folder = tmp_path / "data"
    for n in range(20):
        write(folder, f"f{n:02}.txt", f"file {n}")
    daemon = DaemonProcess(server, folder, tmp_path / "state")
    with daemon.start():
        # Each upload takes 3 s, so the graceful stop is still waiting for it below.
        wait_for(lambda: server.stats()["counts"].get("create", 0) >= 1, what="an upload")
        daemon.send(signal.SIGTERM)
        daemon.wait_event("stopping")
        assert daemon.stop(signal.SIGTERM) == 128 + signal.SIGTERM


def test_stop_mid_first_pass_leaves_the_rest_pending(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """SIGTERM during the first reconcile: `syncd status` counts every file not mirrored
    as pending, and the last pass as interrupted."""
    server = server_factory(faults={"latency_ms": 300, "routes": ["create"]})
    folder, state = tmp_path / "data", tmp_path / "state"
    for n in range(60):
        write(folder, f"f{n:02}.txt", f"file {n}")
    daemon = DaemonProcess(server, folder, state)
    with daemon.start():
        wait_for(lambda: server.stats()["counts"].get("create", 0) >= 8, what="uploads begin")
        assert daemon.stop(signal.SIGTERM, timeout=15) == 0
    code, stdout, stderr = run_command("status", folder, "--state", state, "--json")
    assert code == 0, stderr
    status = json.loads(stdout)
    mirrored = len(list_remote(server))
    assert status["mirrored"] == mirrored < 60
    assert status["pending"] == 60 - mirrored
    assert status["last_pass"]["result"] == "interrupted"
