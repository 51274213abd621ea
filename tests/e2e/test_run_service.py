"""`syncd run` as a service: safety pauses, the key, reloads, sd_notify, config errors."""

from __future__ import annotations

import shutil
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from serverproc import ServerProcess
from test_run_support import (
    DaemonProcess,
    Messages,
    open_notify_socket,
    remote_names,
    run_command,
    wait_for,
    write,
    write_counts,
)


def test_folder_renamed_away_pauses_without_deleting(server: ServerProcess, tmp_path: Path) -> None:
    """A folder renamed away (as if unmounted) pauses the mirror; back, it resumes."""
    folder = tmp_path / "data"
    for name in ("a.txt", "b.txt", "c.txt"):
        write(folder, name, name)
    with (daemon := DaemonProcess(server, folder, tmp_path / "state")).start_ready():
        folder.rename(tmp_path / "elsewhere")
        daemon.wait_event("paused", lambda e: "is gone" in e["reason"])
        (tmp_path / "elsewhere").rename(folder)
        daemon.wait_event("resumed")
        write(folder, "d.txt", "after")
        wait_for(lambda: "d.txt" in remote_names(server), what="d.txt after the folder came back")
        assert remote_names(server) == ["a.txt", "b.txt", "c.txt", "d.txt"]
        assert write_counts(server)["delete"] == 0


def test_folder_replaced_by_empty_directory_stays_paused(
    server: ServerProcess, tmp_path: Path
) -> None:
    """An empty directory in the folder's place (an unmounted disk) deletes nothing."""
    folder = tmp_path / "data"
    for name in ("a.txt", "b.txt"):
        write(folder, name, name)
    with (daemon := DaemonProcess(server, folder, tmp_path / "state")).start_ready():
        folder.rename(tmp_path / "disk")
        daemon.wait_event("paused", lambda e: "is gone" in e["reason"])
        folder.mkdir()  # the bare mount point
        daemon.wait_event("paused", lambda e: "is empty but 2 files" in e["reason"])
        assert remote_names(server) == ["a.txt", "b.txt"]
        assert write_counts(server)["delete"] == 0


def test_missing_mirrored_folder_at_start_is_not_created(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A folder that was mirrored but is missing at start is waited for, not created."""
    folder = tmp_path / "data"
    write(folder, "a.txt", "a")
    daemon = DaemonProcess(server, folder, tmp_path / "state")
    with daemon.start_ready():
        assert daemon.stop() == 0
    shutil.rmtree(folder)
    with daemon.start_ready():
        assert daemon.events("paused")
        assert not folder.exists()
        assert remote_names(server) == ["a.txt"]


def test_a_missing_folder_is_an_error_unless_asked_to_create_it(tmp_path: Path) -> None:
    """`syncd run --local ./dtaa` (a typo): exit 2 naming the folder and --create-folder,
    nothing created, no server started."""
    folder = tmp_path / "dtaa"
    code, _stdout, stderr = run_command("run", folder, "--local", "--state", tmp_path / "st")
    assert code == 2
    assert stderr.count("\n") == 1 and f"folder {folder} does not exist" in stderr
    assert "--create-folder" in stderr
    assert not folder.exists() and not (tmp_path / "st" / "local-server").exists()


def test_local_creates_a_new_folder_and_mirrors_it(tmp_path: Path) -> None:
    """`syncd run --local --create-folder ./data` on a fresh checkout creates ./data and
    mirrors into it."""
    folder = tmp_path / "fresh" / "data"
    args = ("--local", "--create-folder")
    with (daemon := DaemonProcess(None, folder, tmp_path / "state", *args)).start_ready():
        assert folder.is_dir()
        assert daemon.events("folder_created")
        write(folder, "hello.txt", "hello")
        event = daemon.wait_event("uploaded", lambda e: e.get("path") == "hello.txt")
        assert event["file_id"].startswith("file-")


def test_rejected_key_pauses_until_the_key_file_changes(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A 401 pauses uploads (logged once, hints kept); a fixed key file resumes them."""
    right, wrong = "sk-right-0123456789abcdef", "sk-wrong-0123456789abcdef"
    server = server_factory(api_key=right)
    key_file = tmp_path / "openai_api_key"
    key_file.write_text(wrong + "\n")
    folder = tmp_path / "data"
    write(folder, "early.txt", "made before the key was fixed")
    env = {"OPENAI_API_KEY_FILE": str(key_file)}
    with (daemon := DaemonProcess(server, folder, tmp_path / "state", env=env)).start():
        daemon.wait_event("api_key_rejected")
        daemon.wait_event("ready")
        write(folder, "later.txt", "made while paused")
        key_file.write_text(right + "\n")
        daemon.wait_event("resumed")
        wait_for(lambda: remote_names(server) == ["early.txt", "later.txt"], what="uploads resumed")
        assert len(daemon.events("api_key_rejected")) == 1
        log = daemon.log_text()
        assert right not in log and wrong not in log


def test_sighup_reloads_the_config(server: ServerProcess, tmp_path: Path) -> None:
    """SIGHUP re-reads the config file: a new exclude applies to the next changes."""
    folder = tmp_path / "data"
    folder.mkdir()
    config = tmp_path / "syncd.toml"
    config.write_text('[[mirror]]\nfolder = "data"\n')
    args = ("--config", str(config))
    with (daemon := DaemonProcess(server, None, tmp_path / "state", *args)).start_ready():
        write(folder, "a.log", "before the reload")
        wait_for(lambda: remote_names(server) == ["a.log"], what="a.log")
        config.write_text('[[mirror]]\nfolder = "data"\nexclude = ["*.log"]\n')
        daemon.send(signal.SIGHUP)
        daemon.wait_event("reloaded")
        write(folder, "b.log", "excluded now")
        write(folder, "c.txt", "still mirrored")
        wait_for(lambda: "c.txt" in remote_names(server), what="c.txt")
        assert remote_names(server) == ["a.log", "c.txt"]  # a.log is left alone


def test_sighup_with_a_broken_config_keeps_the_running_one(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A reload that finds a mistake in the file logs it and keeps mirroring as before."""
    folder = tmp_path / "data"
    folder.mkdir()
    config = tmp_path / "syncd.toml"
    config.write_text('[[mirror]]\nfolder = "data"\nexclude = ["*.log"]\n')
    args = ("--config", str(config))
    with (daemon := DaemonProcess(server, None, tmp_path / "state", *args)).start_ready():
        config.write_text('[[mirror]]\nfolder = "data"\nexclude = "*.log"\n')
        daemon.send(signal.SIGHUP)
        failed = daemon.wait_event("reload_failed")
        assert "exclude" in failed["error"]
        write(folder, "b.log", "still excluded")
        write(folder, "c.txt", "still mirrored")
        wait_for(lambda: "c.txt" in remote_names(server), what="c.txt")
        assert remote_names(server) == ["c.txt"]


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET (short path under /tmp)."""
    with open_notify_socket() as pair:
        yield pair


def test_sd_notify_ready_status_watchdog_stopping(
    server: ServerProcess, tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    """READY=1 with STATUS= after the first pass, WATCHDOG=1 pings, STOPPING=1 on SIGTERM."""
    sock, path = notify_socket
    folder = tmp_path / "data"
    write(folder, "a.txt", "a")
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    messages = Messages(sock)
    with (daemon := DaemonProcess(server, folder, tmp_path / "state", env=env)).start():
        ready = messages.wait_for(lambda m: "READY=1" in m, "READY=1")
        assert "STATUS=mirrored 1 file, 0 pending, 0 failed" in ready
        messages.wait_for(lambda m: m == ["WATCHDOG=1"], "WATCHDOG=1")
        write(folder, "b.txt", "b")
        messages.wait_for(lambda m: any(x.startswith("STATUS=mirrored 2 files") for x in m), "2")
        assert daemon.stop() == 0
        messages.wait_for(lambda m: m == ["STOPPING=1"], "STOPPING=1")
    assert sum(m == ["WATCHDOG=1"] for m in messages.received) >= 2


def test_paced_first_mirror_shows_in_status_and_a_stop_does_not_wait_for_it(
    server: ServerProcess, tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    """At 20 uploads a minute a first mirror of 12 files is paced for half a minute:
    STATUS= and `syncd status` say so while it runs; SIGTERM ends the waits at once
    (a graceful exit 0, not the forced one after the grace period), and the next sync
    finishes the job without a duplicate."""
    sock, path = notify_socket
    folder = tmp_path / "data"
    state = tmp_path / "state"
    for n in range(12):
        write(folder, f"f{n:02}.txt", f"file {n}")
    messages = Messages(sock)
    paced = "uploads paced at 20/min (configured)"
    daemon = DaemonProcess(
        server, folder, state, "--max-uploads-per-minute", "20", env={"NOTIFY_SOCKET": path}
    )
    with daemon.start():
        status = messages.wait_for(lambda m: any(paced in x for x in m), "paced STATUS=")
        assert f"STATUS=starting: full reconcile of 1 folder(s); {paced}" in status

        def status_says_paced() -> bool:
            code, stdout, _ = run_command("status", folder, "--state", state)
            return code == 0 and f"pacing:    {paced} since" in stdout

        wait_for(status_says_paced, what="syncd status naming the pacing")
        assert daemon.stop() == 0
    assert daemon.events("stopped")
    assert not daemon.events("stop_forced")
    assert write_counts(server)["create"] < 12
    code, _stdout, stderr = run_command(
        "sync",
        folder,
        "--state",
        state,
        "--base-url",
        server.base_url,
        env={"OPENAI_API_KEY": server.client_key},
    )
    assert code == 0, stderr
    assert remote_names(server) == sorted(f"f{n:02}.txt" for n in range(12))


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[[mirror]]\nfolder = "d"\ndebounce = "fast"\n', "debounce must be seconds"),
        ('[[mirror]]\nfolder = "d"\ndebunce = 1\n', "key 'debunce' is unknown"),
        ("[[mirror]\n", "syncd.toml"),
    ],
)
def test_config_mistake_is_one_line_and_exit_2(tmp_path: Path, toml: str, expected: str) -> None:
    """A config mistake exits 2 with one line naming the key, before anything starts."""
    config = tmp_path / "syncd.toml"
    config.write_text(toml)
    code, _stdout, stderr = run_command("run", "--config", config, "--state", tmp_path / "st")
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("syncd: ")
    assert expected in stderr
    assert not (tmp_path / "d").exists()


def test_missing_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Without any API key (and without --local) the daemon refuses to start, exit 2."""
    (tmp_path / "data").mkdir()
    code, _stdout, stderr = run_command("run", tmp_path / "data", "--state", tmp_path / "st")
    assert code == 2
    assert stderr.startswith("syncd: no API key") and stderr.count("\n") == 1
