"""HttpFilesRemote against `syncd serve` with faults on: retries, ambiguity, the shared gate."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProcess
from structlog.testing import capture_logs

from syncd.errors import AmbiguousError, RateLimitedError
from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.retry import RetryGate
from syncd.remote.settings import RemoteSettings

ServerFactory = Callable[..., ServerProcess]


def client(server: ServerProcess, **settings: Any) -> HttpFilesRemote:
    options = {"backoff_base": 0.01, "backoff_cap": 0.05, **settings}
    pool_size = options.pop("pool_size", 16)
    return HttpFilesRemote(
        RemoteSettings(base_url=server.base_url, api_key=server.client_key, **options),
        pool_size=pool_size,
    )


def make_files(folder: Path, count: int, size: int = 100) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / f"f{n:03}.txt"
        path.write_bytes(f"{n:03}".encode() * (size // 3 + 1))
        paths.append(path)
    return paths


def requests_of(server: ServerProcess, route: str) -> list[dict[str, Any]]:
    return [r for r in server.stats()["requests"] if r["route"] == route]


def test_reads_and_deletes_retry_injected_5xx_then_succeed(
    server: ServerProcess, tmp_path: Path
) -> None:
    """With half of GET/DELETE answered 5xx, list/retrieve/download/delete still succeed."""
    sources = make_files(tmp_path / "src", 6, size=5000)
    with client(server, max_attempts=12) as remote:
        ids = [remote.upload(p, p.name, "vision").id for p in sources]  # downloadable
        server.set_faults(
            {
                "seed": 3,
                "error_rate": 0.5,
                "error_statuses": [500, 502, 503],
                "methods": ["GET", "DELETE"],
            }
        )
        server.reset_stats()
        with capture_logs() as logs:
            assert sorted(f.id for f in remote.list_files()) == sorted(ids)
            for file_id, source in zip(ids, sources, strict=True):
                assert remote.retrieve(file_id).bytes == source.stat().st_size
                out = io.BytesIO()
                remote.download(file_id, out)
                assert out.getvalue() == source.read_bytes()
                remote.delete(file_id)
        server.set_faults(None)
        assert list(remote.list_files()) == []
    faulted = [r for r in server.stats()["requests"] if r["fault"] == "error"]
    retries = [e for e in logs if e["event"] == "remote_retry"]
    assert faulted, "the fault injection did not fire"
    assert len(retries) == len(faulted)  # every injected error was retried, once each
    assert {e["status"] for e in retries} <= {500, 502, 503}


def test_uploads_retry_refusals_and_store_each_file_once(
    server: ServerProcess, tmp_path: Path
) -> None:
    """408/409/429 on uploads mean "not stored": retried until success, no duplicates."""
    sources = make_files(tmp_path / "src", 10)
    server.set_faults({"seed": 5, "error_rate": 0.5, "error_statuses": [408, 409, 429]})
    with client(server, max_attempts=12) as remote:
        for path in sources:
            remote.upload(path, path.name, "user_data")
        server.set_faults(None)
        names = sorted(f.filename for f in remote.list_files())
    assert names == sorted(p.name for p in sources)
    creates = requests_of(server, "create")
    assert len(creates) > len(sources)  # some were refused and retried
    assert sum(1 for r in creates if r["status"] == 200) == len(sources)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_upload_answered_5xx_is_ambiguous_and_not_retried(
    server: ServerProcess, tmp_path: Path, status: int
) -> None:
    """A 5xx after the whole upload was sent raises AmbiguousError after one request."""
    [source] = make_files(tmp_path / "src", 1)
    server.set_faults({"error_rate": 1.0, "error_statuses": [status], "routes": ["create"]})
    with client(server) as remote, pytest.raises(AmbiguousError) as info:
        remote.upload(source, source.name, "user_data")
    assert info.value.status == status
    assert len(requests_of(server, "create")) == 1


def test_lost_answer_is_ambiguous_and_the_file_is_on_the_server(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Stored-but-answer-lost: AmbiguousError, one request only, and the file exists remotely."""
    [source] = make_files(tmp_path / "src", 1, size=3000)
    server.set_faults({"lost_answer_rate": 1.0})
    with client(server) as remote:
        with pytest.raises(AmbiguousError):
            remote.upload(source, "sub/f000.txt", "user_data")
        assert len(requests_of(server, "create")) == 1
        server.set_faults(None)
        [stored] = list(remote.list_files())
    assert (stored.filename, stored.bytes) == ("sub/f000.txt", source.stat().st_size)


class RecordingGate(RetryGate):
    """A RetryGate that notes, under its own lock, each pause and each passage.

    Recording under the gate's lock (a Condition over an RLock, so ``wait`` can take it
    again) orders every passage strictly before or after every pause: the check below
    does not depend on how the threads are scheduled."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[tuple[float, float]] = []
        self.passages: list[float] = []

    def pause_for(self, seconds: float) -> None:
        with self._cond:
            super().pause_for(seconds)
            self.pauses.append((time.monotonic(), self._paused_until))

    def wait(self) -> None:
        with self._cond:
            super().wait()
            self.passages.append(time.monotonic())


def test_rate_limit_pauses_every_worker_for_the_retry_after(
    server: ServerProcess, tmp_path: Path
) -> None:
    """8 workers, one remote: after a 429 + Retry-After no worker passes the gate until
    it ends, and at most the 7 other workers' requests already past it reach the server."""
    retry_after = 1.0
    workers = 8
    sources = make_files(tmp_path / "src", 30)
    server.set_faults(
        {"rate_limit": {"requests": 8, "per_seconds": 1.0, "retry_after": retry_after}}
    )
    gate = RecordingGate()
    settings = RemoteSettings(
        base_url=server.base_url,
        api_key=server.client_key,
        backoff_base=0.01,
        backoff_cap=0.05,
        max_attempts=30,
    )
    with HttpFilesRemote(settings, pool_size=workers, gate=gate) as remote:

        def upload(path: Path) -> str:
            return remote.upload(path, path.name, "user_data").filename

        with ThreadPoolExecutor(max_workers=workers) as pool:
            uploaded = sorted(pool.map(upload, sources))
        server.set_faults(None)
        assert sorted(f.filename for f in remote.list_files()) == uploaded
    assert uploaded == sorted(p.name for p in sources)
    creates = requests_of(server, "create")
    limited = [r for r in creates if r["status"] == 429]
    assert limited, "the rate limit never fired"
    assert gate.pauses, "no 429 paused the gate"
    every_request = server.stats()["requests"]
    assert len(gate.passages) >= len(every_request), "requests went out without the gate"
    for started, until in gate.pauses:
        assert until - started == pytest.approx(retry_after, abs=0.01)
        inside = [t for t in gate.passages if started < t < until]
        assert inside == [], f"workers passed the gate during a Retry-After: {inside}"
    for refusal in limited:
        window = (refusal["finished"], refusal["finished"] + retry_after)
        inside_server = [r for r in creates if window[0] < r["started"] < window[1]]
        # Only requests that passed the gate before the client read this 429 may arrive.
        assert len(inside_server) < workers, f"requests during a Retry-After: {inside_server}"


def test_a_retry_after_beyond_the_limit_defers_instead_of_blocking(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A Retry-After over max_retry_after fails fast, and blocks all requests while it runs."""
    sources = make_files(tmp_path / "src", 2)
    server.set_faults({"rate_limit": {"requests": 0, "per_seconds": 1.0, "retry_after": 600}})
    with client(server, max_retry_after=5.0) as remote:
        with pytest.raises(RateLimitedError) as first:
            remote.upload(sources[0], sources[0].name, "user_data")
        assert first.value.retry_after == 600
        with pytest.raises(RateLimitedError) as second:
            remote.upload(sources[1], sources[1].name, "user_data")
        assert second.value.retry_after is not None and second.value.retry_after > 590
    assert len(requests_of(server, "create")) == 1
