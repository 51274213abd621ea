"""HttpFilesRemote pacing its uploads under `syncd serve --rate-limit` over real HTTP.

No test here measures speed: each counts 429 answers and checks that requests were
spread out (server-side arrival times, with generous bounds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from serverproc import ServerProcess

from syncd.errors import RetryableError, StoppedError
from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.pacing import PacingConfig
from syncd.remote.settings import RemoteSettings

ServerFactory = Callable[..., ServerProcess]
WORKERS = 8
DEADLINE = 20.0


def client(server: ServerProcess, pacing: PacingConfig, **settings: Any) -> HttpFilesRemote:
    options = {"backoff_base": 0.01, "backoff_cap": 0.05, **settings}
    return HttpFilesRemote(
        RemoteSettings(
            base_url=server.base_url, api_key=server.client_key, pacing=pacing, **options
        ),
        pool_size=WORKERS + 2,
    )


def make_files(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / f"f{n:03}.txt"
        path.write_bytes(f"file {n}".encode())
        paths.append(path)
    return paths


def upload_all(remote: HttpFilesRemote, paths: list[Path]) -> list[str]:
    with ThreadPoolExecutor(WORKERS) as pool:
        return [f.id for f in pool.map(lambda p: remote.upload(p, p.name, "user_data"), paths)]


def creates(server: ServerProcess) -> list[dict[str, Any]]:
    return [r for r in server.stats()["requests"] if r["route"] == "create"]


def test_a_configured_pace_stays_under_a_small_bucket(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """Configured 600/min against a 600/min server whose bucket holds only 3: 24 uploads
    from 8 threads get no 429, and arrive spread over at least ~2 s (unpaced, they would
    all arrive at once and most would be refused)."""
    server = server_factory(extra_args=["--rate-limit", "600/min:3"])
    paths = make_files(tmp_path / "f", 24)
    with client(server, PacingConfig(600)) as remote:
        ids = upload_all(remote, paths)
        (status,) = remote.pacing_status()
    assert len(set(ids)) == 24
    seen = creates(server)
    assert [r["status"] for r in seen].count(429) == 0
    starts = sorted(r["started"] for r in seen)
    assert starts[-1] - starts[0] >= 0.8 * 23 / 10
    assert status.describe() == "uploads paced at 600/min (configured)"
    assert status.delayed_requests >= 20 and status.rate_limited == 0


def test_an_unconfigured_client_paces_by_the_servers_headers(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """No configured limit: the rate-limit headers of `--rate-limit 10/s` (a bucket of
    10) are enough to pace 40 uploads from 8 threads without a single 429."""
    server = server_factory(extra_args=["--rate-limit", "10/s"])
    paths = make_files(tmp_path / "f", 40)
    with client(server, PacingConfig(None)) as remote:
        ids = upload_all(remote, paths)
        (status,) = remote.pacing_status()
    assert len(set(ids)) == 40
    assert [r["status"] for r in creates(server)].count(429) == 0
    assert (status.route, status.source, status.rate) == ("create", "server limit", 10.0)


def test_an_unknown_limit_is_found_after_429s(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A server that limits without telling (a sliding window of 10 per second, 429s
    without x-ratelimit headers): every upload lands; after the first refusals the pace
    comes from AIMD, and far fewer than all requests are refused."""
    limit = {"rate_limit": {"requests": 10, "per_seconds": 1, "retry_after": 0.2}}
    server = server_factory(faults={**limit, "routes": ["create"]})
    paths = make_files(tmp_path / "f", 40)
    with client(server, PacingConfig(None), max_attempts=10) as remote:
        ids = upload_all(remote, paths)
        (status,) = remote.pacing_status()
    assert len(set(ids)) == 40
    refused = [r["status"] for r in creates(server)].count(429)
    assert 1 <= refused <= 20
    assert status.source == "after 429s" and status.rate_limited == refused
    assert status.rate is not None and status.rate < 40


def test_pacing_off_leaves_429s_to_the_gate(server_factory: ServerFactory, tmp_path: Path) -> None:
    """max_uploads_per_minute 0 (learn=False): no pacing at all, as before issue 13; the
    gate and the retries still bring every upload through."""
    server = server_factory(extra_args=["--rate-limit", "20/s:2"])
    paths = make_files(tmp_path / "f", 16)
    with client(server, PacingConfig(None, learn=False), max_attempts=20) as remote:
        ids = upload_all(remote, paths)
        assert remote.pacing_status() == ()
    assert len(set(ids)) == 16


def test_a_stop_ends_a_long_pacing_wait_and_sends_nothing(
    server: ServerProcess, tmp_path: Path
) -> None:
    """At 2 uploads a minute the second waits 30 s; interrupt_waits() ends that wait with
    StoppedError at once and the server never sees the request; resume_waits() lets the
    next one wait again."""
    first, second = make_files(tmp_path / "f", 2)
    with client(server, PacingConfig(2)) as remote:
        remote.upload(first, first.name, "user_data")
        outcome: list[BaseException] = []

        def upload() -> None:
            try:
                remote.upload(second, second.name, "user_data")
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=upload)
        worker.start()
        deadline = time.monotonic() + DEADLINE
        while not remote.pacing_status()[0].waiting:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        remote.interrupt_waits()
        worker.join(DEADLINE)
        assert not worker.is_alive()
        assert isinstance(outcome[0], StoppedError)
        assert isinstance(outcome[0], RetryableError)
        assert len(creates(server)) == 1
        remote.resume_waits()
        assert remote.pacing_status()[0].waiting == 0
