"""A wrong base URL, a server that is down, and failures fixed on the server's side:
nothing is marked failed for good by mistake, and what was can be retried on purpose."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from serverproc import ServerProcess
from synccli import local_files, remote_files, run_syncd, write, write_counts
from test_run_support import DaemonProcess, wait_for


def status_of(folder: Path, state: Path) -> dict[str, object]:
    result = run_syncd(None, "status", folder, "--state", state, "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_wrong_base_url_stops_before_any_upload_then_the_right_one_works(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Without /v1: exit 2 with one line asking about the base URL, no upload tried, no
    file recorded as failed; the right URL then mirrors everything."""
    folder, state = tmp_path / "data", tmp_path / "state"
    for name in ("x.txt", "y.txt"):
        write(folder, name, name)
    wrong = server.base_url.removesuffix("/v1")
    key = {"OPENAI_API_KEY": server.client_key}
    first = run_syncd(None, "sync", folder, "--state", state, "--base-url", wrong, env=key)
    assert first.returncode == 2, first.stderr
    assert first.stderr.count("is the base URL right?") == 1
    assert "Traceback" not in first.stderr
    assert write_counts(server)["create"] == 0
    status = status_of(folder, state)
    assert status["failed"] == 0 and status["retrying"] == 0 and status["problems"] == []
    second = run_syncd(server, "sync", folder, "--state", state)
    assert second.returncode == 0, second.stderr
    assert remote_files(server) == local_files(folder)


def test_server_down_fails_the_pass_not_the_files(tmp_path: Path) -> None:
    """Nothing listening at the URL: exit 1 saying the listing failed; no file marked."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.txt", "a")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    result = run_syncd(
        None, "sync", folder, "--state", state, "--base-url", url, env={"OPENAI_API_KEY": "k"}
    )
    assert result.returncode == 1
    assert "cannot list the remote files" in result.stderr
    assert "nothing was uploaded" in result.stderr
    status = status_of(folder, state)
    assert status["failed"] == 0 and status["retrying"] == 0


def test_retry_failed_tries_a_permanent_failure_again(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A file refused with a 400 stays failed while unchanged (touch or not);
    --retry-failed tries it again, and once the server accepts it, it is mirrored."""
    folder, state = tmp_path / "data", tmp_path / "state"
    path = write(folder, "x.txt", "refused at first")
    server.set_faults({"error_rate": 1.0, "error_statuses": [400], "routes": ["create"]})
    first = run_syncd(server, "sync", folder, "--state", state)
    assert first.returncode == 1 and "failed: x.txt" in first.stderr
    server.set_faults(None)
    path.touch()
    again = run_syncd(server, "sync", folder, "--state", state)
    assert again.returncode == 1
    assert "failed earlier, unchanged since: x.txt" in again.stderr
    assert "--retry-failed" in again.stderr
    retried = run_syncd(server, "sync", folder, "--state", state, "--retry-failed")
    assert retried.returncode == 0, retried.stderr
    assert remote_files(server) == {"x.txt": b"refused at first"}
    assert status_of(folder, state)["failed"] == 0


def test_daemon_pauses_on_a_wrong_endpoint_and_resumes(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """`syncd run` whose server answers 404 for /files: it keeps running, says so once
    (log and STATUS=), marks no file failed, and mirrors once the server is right."""
    server = server_factory(
        faults={"error_rate": 1.0, "error_statuses": [404], "routes": ["list", "create"]}
    )
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.txt", "a")
    with (daemon := DaemonProcess(server, folder, state)).start():
        event = daemon.wait_event("remote_unusable")
        assert "is the base URL right?" in event["reason"]
        daemon.wait_event("ready", lambda e: "paused: " in e["status"])
        write(folder, "b.txt", "written while paused")
        server.set_faults(None)
        daemon.send(signal.SIGHUP)  # try at once rather than after the backoff
        daemon.wait_event("resumed")
        wait_for(lambda: sorted(remote_files(server)) == ["a.txt", "b.txt"], what="both files")
        assert len(daemon.events("remote_unusable")) == 1
        assert daemon.stop() == 0
    assert status_of(folder, state)["failed"] == 0
