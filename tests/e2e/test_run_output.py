"""`syncd run` whose output nobody reads any more: it goes on mirroring and still stops."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from serverproc import REPO_ROOT, ServerProcess, clean_env
from test_run_support import (
    DaemonProcess,
    Messages,
    open_notify_socket,
    remote_names,
    run_command,
    wait_for,
    write,
)


def test_daemon_behind_a_pipe_that_closes_mirrors_on_and_stops(
    server: ServerProcess, tmp_path: Path
) -> None:
    """`syncd run 2>&1 | cat`, then cat ends: a later change is still mirrored, SIGINT still
    exits 0 with no intent left open, and STATUS= counts the log lines lost."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "before.txt", "mirrored at start")
    with open_notify_socket() as (sock, notify_path):
        messages = Messages(sock)
        daemon = DaemonProcess(server, folder, state, env={"NOTIFY_SOCKET": notify_path})
        proc = subprocess.Popen(
            daemon.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=clean_env(daemon.env),
            cwd=REPO_ROOT,
        )
        try:
            messages.wait_for(lambda m: "READY=1" in m, "READY=1")
            assert proc.stdout is not None
            proc.stdout.close()  # the only reader of the pipe goes away, as `cat` would
            write(folder, "after.txt", "written once nobody read the log")
            wait_for(lambda: "after.txt" in remote_names(server), what="after.txt uploaded")
            messages.wait_for(
                lambda m: any(x.startswith("STATUS=") and "log lines lost" in x for x in m),
                "the lost log lines in STATUS=",
            )
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    code, stdout, _stderr = run_command("status", folder, "--state", state, "--json")
    assert code == 0
    status = json.loads(stdout)
    assert status["mirrored"] == 2 and status["unfinished_actions"] == 0


def test_first_mirror_in_a_terminal_shows_progress(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """`syncd run` on a terminal: a long first pass draws a files/bytes progress bar."""
    server = server_factory(faults={"latency_ms": 40, "routes": ["create"]})
    folder, state = tmp_path / "data", tmp_path / "state"
    for n in range(200):
        write(folder, f"f{n:03}.txt", f"file {n}")
    daemon = DaemonProcess(server, folder, state)
    argv = [a for a in daemon.argv() if a not in ("--log-format", "json")]
    leader, follower = pty.openpty()
    output = bytearray()

    def drain() -> None:
        with contextlib.suppress(OSError):
            while chunk := os.read(leader, 65536):
                output.extend(chunk)

    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=clean_env({**daemon.env, "TERM": "xterm", "COLUMNS": "100"}),
        cwd=REPO_ROOT,
    )
    os.close(follower)
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        wait_for(lambda: b"syncing " in output and b"/200 files" in output, what="the bar")
        wait_for(lambda: len(remote_names(server)) == 200, what="the first mirror")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        os.close(leader)
