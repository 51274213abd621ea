"""Ctrl-C of `syncd sync`: it stops at once, says what it did, and the next run finishes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from serverproc import REPO_ROOT, ServerProcess, clean_env
from synccli import list_remote, local_files, remote_files, run_syncd, write
from test_run_support import wait_for

from syncd.sync.engine import STOP_GRACE_SECONDS


def start_sync(server: ServerProcess, folder: Path, state: Path) -> subprocess.Popen[str]:
    """`syncd sync FOLDER` in the background, its stderr kept for the test."""
    argv = [sys.executable, "-m", "syncd", "sync", str(folder), "--state", str(state)]
    return subprocess.Popen(
        [*argv, "--base-url", server.base_url],
        env=clean_env({"OPENAI_API_KEY": server.client_key}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )


def creates(server: ServerProcess) -> int:
    return int(server.stats()["counts"].get("create", 0))


def status_of(folder: Path, state: Path) -> dict[str, object]:
    result = run_syncd(None, "status", folder, "--state", state, "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_ctrl_c_stops_the_pass_and_records_it_as_interrupted(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """The first Ctrl-C: no new upload, exit 130 within the grace, the ledger's last pass
    is `interrupted` with the uploads that really happened, the rest counts as pending;
    the next `syncd sync` mirrors everything exactly once."""
    server = server_factory(faults={"latency_ms": 150, "routes": ["create"]})
    folder, state = tmp_path / "data", tmp_path / "state"
    total = 300
    for n in range(total):
        write(folder, f"f{n:03}.txt", f"file {n}")
    proc = start_sync(server, folder, state)
    try:
        wait_for(lambda: creates(server) >= 24, what="uploads under way")
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 130, stderr
    assert took < STOP_GRACE_SECONDS + 2, f"took {took:.1f} s to stop"
    assert "Traceback" not in stderr and "syncd: interrupted: " in stderr
    mirrored = len(list_remote(server))
    assert 24 <= mirrored < total  # it did stop: a few seconds more would have done all
    assert creates(server) == mirrored  # nothing was sent after the pass ended
    status = status_of(folder, state)
    last = status["last_pass"]
    assert isinstance(last, dict) and last["result"] == "interrupted"
    assert last["counts"]["uploaded"] == mirrored == status["mirrored"]
    assert last["counts"]["not_run"] == total - mirrored
    assert status["pending"] == total - mirrored
    again = run_syncd(server, "sync", folder, "--state", state)
    assert again.returncode == 0, again.stderr
    assert remote_files(server) == local_files(folder)
    assert creates(server) == total


def test_second_ctrl_c_exits_at_once_and_the_next_run_settles(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A second Ctrl-C while uploads hang exits 130 at once; the next run converges with
    no duplicate (the open intents are reconciled)."""
    server = server_factory(faults={"latency_ms": 20000, "routes": ["create"]})
    folder, state = tmp_path / "data", tmp_path / "state"
    for n in range(12):
        write(folder, f"f{n:02}.txt", f"file {n}")
    proc = start_sync(server, folder, state)
    try:
        wait_for(lambda: creates(server) >= 8, what="uploads in flight")
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        assert "syncd: interrupted: " in proc.stderr.readline()
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 130
    assert took < STOP_GRACE_SECONDS
    server.set_faults(None)
    again = run_syncd(server, "sync", folder, "--state", state)
    assert again.returncode == 0, again.stderr
    assert remote_files(server) == local_files(folder)
