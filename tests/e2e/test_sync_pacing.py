"""`syncd sync` pacing its uploads under a rate limit, and `syncd status` saying so.

No timing assertions beyond generous spacing bounds: the tests count 429 answers and
read what the summary and the ledger say.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProcess, clean_env
from synccli import list_remote, run_syncd, sync_json, write

ServerFactory = Any


def make_folder(root: Path, count: int) -> Path:
    for n in range(count):
        write(root, f"f{n:03}.txt", f"file {n}")
    return root


def creates(server: ServerProcess) -> list[dict[str, Any]]:
    return [r for r in server.stats()["requests"] if r["route"] == "create"]


def test_a_configured_pace_spaces_uploads_and_is_reported(
    server: ServerProcess, tmp_path: Path
) -> None:
    """--max-uploads-per-minute 600: 12 uploads arrive spread over at least ~1 s; the
    summary, its JSON and `syncd status` say uploads were paced at 600/min (configured)."""
    folder = make_folder(tmp_path / "data", 12)
    state = tmp_path / "state"
    summary = sync_json(server, folder, state, "--max-uploads-per-minute", "600")
    assert summary["_exit"] == 0, summary["_stderr"]
    (route,) = summary["pacing"]
    assert (route["route"], route["per_minute"], route["source"]) == ("create", 600.0, "configured")
    assert route["delayed_requests"] >= 8 and route["rate_limited"] == 0
    assert "uploads paced at 600/min (configured): " in summary["_stderr"]
    starts = sorted(r["started"] for r in creates(server))
    assert starts[-1] - starts[0] >= 0.8 * 11 / 10
    status = run_syncd(None, "status", folder, "--state", state)
    assert "pacing:    last pass: uploads paced at 600/min (configured)" in status.stdout
    document = json.loads(run_syncd(None, "status", folder, "--state", state, "--json").stdout)
    assert document["pacing"]["routes"][0]["per_minute"] == 600.0
    assert document["pacing"]["running"] is False


def test_the_servers_limit_is_learned_from_its_headers(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """No option, another server than api.openai.com: `syncd serve --rate-limit 20/s`
    (a bucket of 20) paces 60 uploads by its headers alone, without a 429."""
    server = server_factory(extra_args=["--rate-limit", "20/s"])
    folder = make_folder(tmp_path / "data", 60)
    summary = sync_json(server, folder, tmp_path / "state")
    assert summary["_exit"] == 0, summary["_stderr"]
    assert [r["status"] for r in creates(server)].count(429) == 0
    assert "uploads paced at 1,200/min (server limit)" in summary["_stderr"]


def test_no_pacing_when_nothing_waits(server: ServerProcess, tmp_path: Path) -> None:
    """A pass whose uploads never had to wait says nothing about pacing."""
    folder = make_folder(tmp_path / "data", 3)
    summary = sync_json(server, folder, tmp_path / "state")
    assert summary["_exit"] == 0
    assert "pacing" not in summary
    assert "paced" not in summary["_stderr"]
    status = run_syncd(None, "status", folder, "--state", tmp_path / "state")
    assert "pacing:" not in status.stdout


@pytest.mark.parametrize("value", ["-5", "abc", "1.5", "2000000"])
def test_a_bad_option_value_is_a_usage_error(
    server: ServerProcess, tmp_path: Path, value: str
) -> None:
    """A --max-uploads-per-minute that is not 0..1,000,000: exit 2 naming the option."""
    folder = make_folder(tmp_path / "data", 1)
    result = run_syncd(server, "sync", folder, "--max-uploads-per-minute", value)
    assert result.returncode == 2
    assert "--max-uploads-per-minute" in result.stderr
    assert "Traceback" not in result.stderr
    assert server.stats()["counts"].get("create", 0) == 0


def test_a_bad_config_value_names_the_key(server: ServerProcess, tmp_path: Path) -> None:
    """max_uploads_per_minute = -1 in a config file: exit 2, one line naming the key."""
    folder = make_folder(tmp_path / "data", 1)
    config = tmp_path / "syncd.toml"
    config.write_text(f'[[mirror]]\nfolder = "{folder}"\nmax_uploads_per_minute = -1\n')
    result = run_syncd(server, "sync", "--config", config, "--state", tmp_path / "state")
    assert result.returncode == 2
    assert "max_uploads_per_minute must be a whole number" in result.stderr
    assert result.stderr.count("\n") == 1


def test_ctrl_c_does_not_wait_out_a_pacing_delay(server: ServerProcess, tmp_path: Path) -> None:
    """At 6 uploads a minute 6 files would take 50 s; Ctrl-C after the first upload ends
    `syncd sync` long before (exit 130), nothing half-done is left: the next sync uploads
    the rest without a duplicate."""
    folder = make_folder(tmp_path / "data", 6)
    state = tmp_path / "state"
    argv = [sys.executable, "-m", "syncd", "sync", str(folder), "--state", str(state)]
    argv += ["--base-url", server.base_url, "--max-uploads-per-minute", "6"]
    proc = subprocess.Popen(
        argv,
        env=clean_env({"OPENAI_API_KEY": server.client_key}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not creates(server):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)  # the paced queue would need 50 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert len(creates(server)) < 6
    again = run_syncd(server, "sync", folder, "--state", state)
    assert again.returncode == 0, again.stderr
    names = sorted(f["filename"] for f in list_remote(server))
    assert names == [f"f{n:03}.txt" for n in range(6)]
