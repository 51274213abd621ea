"""`syncd run --metrics`: /metrics scraped over HTTP and parsed by prometheus-client's
own parser."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from serverproc import ServerProcess
from test_run_support import DaemonProcess, remote_names, run_command, wait_for, write


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    response.raise_for_status()
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_served_and_parse(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Per-folder counts, bytes, requests by endpoint and status, retries and 429s, pass
    durations and the last successful pass, as Prometheus reads them."""
    server = server_factory(
        faults={
            "rate_limit": {"requests": 2, "per_seconds": 1, "retry_after": 0.3},
            "routes": ["create"],
        }
    )
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.txt", "aaaa")
    port = free_port()
    with DaemonProcess(server, folder, state, "--metrics", f"127.0.0.1:{port}") as daemon:
        daemon.start_ready()
        for n in range(5):
            write(folder, f"more/{n}.txt", f"content {n}")
        # Paced after its 429s (AIMD), a loaded machine takes a while: the test is about
        # the metrics, not the speed.
        wait_for(lambda: len(remote_names(server)) == 6, what="six files", deadline=120.0)
        (folder / "a.txt").unlink()
        wait_for(lambda: len(remote_names(server)) == 5, what="a.txt deleted")
        f = str(folder)

        def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            samples = scrape(port)
            done = value(samples, "syncd_files_deleted_total", folder=f) == 1
            return (
                samples if done and value(samples, "syncd_files_mirrored", folder=f) == 5 else None
            )

        samples = wait_for(settled, what="the metrics to settle")
        assert value(samples, "syncd_files_uploaded_total", folder=f) == 6
        assert value(samples, "syncd_uploaded_bytes_total", folder=f) == 4 + 5 * len("content 0")
        assert value(samples, "syncd_deleted_bytes_total", folder=f) == len("aaaa")
        assert value(samples, "syncd_files_pending", folder=f) == 0
        assert value(samples, "syncd_files_failed", folder=f) == 0
        assert value(samples, "syncd_queue_depth", folder=f) == 0
        assert value(samples, "syncd_requests_total", endpoint="create", status="200") == 6
        assert value(samples, "syncd_requests_total", endpoint="create", status="429") >= 1
        assert value(samples, "syncd_rate_limited_total", endpoint="create") >= 1
        assert value(samples, "syncd_retries_total", endpoint="create") >= 1
        assert value(samples, "syncd_requests_total", endpoint="delete", status="200") == 1
        assert value(samples, "syncd_pacing_delay_seconds_total") > 0
        assert value(samples, "syncd_pass_duration_seconds_count", folder=f, kind="full") >= 1
        assert value(samples, "syncd_pass_duration_seconds_count", folder=f, kind="changes") >= 1
        assert value(samples, "syncd_last_successful_pass_timestamp_seconds", folder=f) > 1e9
        names = {name for name, _ in samples}
        assert not [n for n in names if not n.startswith("syncd_")]  # its own registry only
        assert daemon.stop() == 0


def test_metrics_address_in_use_is_one_line_exit_2(server: ServerProcess, tmp_path: Path) -> None:
    """An address already in use: refused at start, one line, exit 2, nothing started."""
    folder = tmp_path / "data"
    folder.mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, stderr = run_command(
            "run",
            folder,
            "--state",
            tmp_path / "state",
            "--local",
            "--metrics",
            f"127.0.0.1:{port}",
        )
    assert code == 2
    assert stderr.strip() == (
        f"syncd: --metrics: cannot serve metrics on 127.0.0.1:{port}: Address already in use"
    )
    assert not (tmp_path / "state").exists()


def test_a_bad_metrics_address_is_one_line(tmp_path: Path) -> None:
    """A malformed --metrics or metrics_address: one line naming it, exit 2."""
    folder = tmp_path / "data"
    folder.mkdir()
    code, _, stderr = run_command("run", folder, "--local", "--metrics", "localhost:http")
    assert code == 2
    assert stderr.strip() == (
        "syncd: --metrics: 'localhost:http': the port must be a number from 1 to 65535"
    )
    config = tmp_path / "syncd.toml"
    config.write_text(f'metrics_address = "::1:9464"\n[[mirror]]\nfolder = "{folder}"\n')
    code, _, stderr = run_command("run", "--config", config, "--local")
    assert code == 2
    assert stderr.strip() == (
        "syncd: syncd.toml: metrics_address: '::1:9464': write an IPv6 address as [::1]:9464"
    )
