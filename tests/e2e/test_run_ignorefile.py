""".syncdignore with the real `syncd run` and `syncd sync` against `syncd serve`."""

from __future__ import annotations

from pathlib import Path

from serverproc import ServerProcess
from synccli import run_syncd
from test_run_support import DaemonProcess, remote_names, wait_for, write, write_counts


def test_daemon_applies_ignore_file_changes_at_the_next_pass(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Adding a rule leaves the newly ignored copy alone remotely and stops uploads of
    matching files; removing it uploads them; the .syncdignore is never uploaded."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "sub/a.csv", "1,2")
    write(folder, "sub/b.txt", "b")
    with DaemonProcess(server, folder, state) as daemon:
        daemon.start_ready()
        assert remote_names(server) == ["sub/a.csv", "sub/b.txt"]
        write(folder, "sub/.syncdignore", "*.csv\n")
        write(folder, "sub/new.csv", "3,4")  # ignored from the start
        (folder / "sub" / "a.csv").unlink()  # ignored now: its remote copy stays
        write(folder, "sub/c.txt", "c")
        wait_for(lambda: "sub/c.txt" in remote_names(server), what="c.txt")
        daemon.wait_event("pass_finished", lambda e: e.get("counts", {}).get("uploaded") == 1)
        assert remote_names(server) == ["sub/a.csv", "sub/b.txt", "sub/c.txt"]
        assert write_counts(server)["delete"] == 0
        (folder / "sub" / ".syncdignore").unlink()  # no longer ignored: uploaded
        wait_for(lambda: "sub/new.csv" in remote_names(server), what="new.csv uploaded")
        wait_for(lambda: "sub/a.csv" not in remote_names(server), what="a.csv's copy deleted")
        assert ".syncdignore" not in " ".join(remote_names(server))
        assert daemon.stop() == 0


def test_root_ignore_file_and_a_bad_line(server: ServerProcess, tmp_path: Path) -> None:
    """A root .syncdignore written while the daemon runs applies at once (a full pass); a
    bad line is one warning naming the file and line, and the daemon goes on."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "keep.txt", "k")
    with DaemonProcess(server, folder, state) as daemon:
        daemon.start_ready()
        write(folder, ".syncdignore", "logs/\nbad\\\n")
        daemon.wait_event(
            "pass_warning", lambda e: e["warning"].startswith(".syncdignore: line 2:")
        )
        write(folder, "logs/today.log", "noise")
        write(folder, "later.txt", "l")
        wait_for(lambda: "later.txt" in remote_names(server), what="later.txt")
        assert remote_names(server) == ["keep.txt", "later.txt"]
        assert len(daemon.events("pass_warning")) == 1  # said once, not every pass
        assert daemon.stop() == 0


def test_sync_honours_ignore_files(server: ServerProcess, tmp_path: Path) -> None:
    """The one-shot sync reads .syncdignore files too."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, ".syncdignore", "*.bin\n")
    write(folder, "x/.syncdignore", "!keep.bin\n")
    write(folder, "x/keep.bin", "kept")
    write(folder, "x/drop.bin", "dropped")
    write(folder, "a.txt", "a")
    result = run_syncd(server, "sync", folder, "--state", state)
    assert result.returncode == 0, result.stderr
    assert remote_names(server) == ["a.txt", "x/keep.bin"]
