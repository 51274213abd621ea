"""EmbeddedServer (behind `--local`) and the `syncd serve` command line."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx
import openai
import pytest
from serverproc import ServerProcess, clean_env

from syncd.errors import StoreLockedError
from syncd.server.embedded import EmbeddedServer, default_data_dir


def test_embedded_server_serves_over_http_and_keeps_its_store(tmp_path: Path) -> None:
    """A file stored through one EmbeddedServer is there for the next one on the same dir."""
    store = tmp_path / "local-store"
    with EmbeddedServer(store, api_key="sk-embedded") as server:
        assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-embedded", max_retries=0)
        file_id = client.files.create(file=("a.txt", b"hello"), purpose="user_data").id
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.base_url, api_key="nope", max_retries=0).files.list()
    assert not any(t.name == "syncd-embedded-server" for t in threading.enumerate())
    with EmbeddedServer(store, allow_all_downloads=True) as again:
        client = openai.OpenAI(base_url=again.base_url, api_key="any", max_retries=0)
        assert client.files.content(file_id).read() == b"hello"


def test_embedded_server_stops_cleanly_and_frees_its_port(tmp_path: Path) -> None:
    """After stop() (twice is fine) the port no longer answers and the store can reopen."""
    server = EmbeddedServer(tmp_path / "s").start()
    url = server.base_url
    assert httpx.get(f"{url}/files", headers={"Authorization": "Bearer k"}).status_code == 200
    server.stop()
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/files", headers={"Authorization": "Bearer k"})
    EmbeddedServer(tmp_path / "s").start().stop()


def test_one_store_one_server(tmp_path: Path) -> None:
    """A second server on a store in use is refused with a clear error."""
    with EmbeddedServer(tmp_path / "s"), pytest.raises(StoreLockedError, match="in use"):
        EmbeddedServer(tmp_path / "s").start()


def test_default_store_follows_xdg_state_home(tmp_path: Path) -> None:
    """Without --data the store is $XDG_STATE_HOME/syncd/serve (the fixture points it here)."""
    assert default_data_dir() == tmp_path / "xdg" / "state" / "syncd" / "serve"


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(env),
        check=False,
    )


def test_serve_refuses_a_store_in_use_in_one_line(server: ServerProcess) -> None:
    """`syncd serve` on a store another server holds exits 1 with one line, no traceback."""
    result = run_serve("--port", "0", "--data", str(server.data_dir))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("syncd: store ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--faults", "{not json"], None, "not valid JSON"),
        ([], {"SYNCD_SERVE_FAULTS": '{"error_rate": 3}'}, "error_rate"),
        (["--faults", "@/nonexistent/faults.json"], None, "cannot read"),
        (["--port", "70000"], None, "--port"),
        (["--header-timeout", "0"], None, "--header-timeout"),
        (["--idle-timeout", "-1"], None, "--idle-timeout"),
        (["--max-connections", "0"], None, "--max-connections"),
    ],
)
def test_serve_reports_bad_options_in_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str] | None, message: str
) -> None:
    """Bad fault configurations, ports and limits are one `syncd:` line and exit code 2."""
    result = run_serve("--data", str(tmp_path / "s"), *args, env=env)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.startswith("syncd: ")
    assert "Traceback" not in result.stderr


def test_serve_takes_faults_from_a_file(tmp_path: Path) -> None:
    """--faults @file loads the configuration from that file."""
    faults = tmp_path / "faults.json"
    faults.write_text('{"error_rate": 1, "error_statuses": [418]}')
    with ServerProcess(tmp_path / "s", extra_args=["--faults", f"@{faults}"]) as server:
        response = httpx.get(f"{server.base_url}/files", headers=server.headers())
        assert response.status_code == 418
