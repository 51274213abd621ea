"""Adaptive concurrency against a real `syncd serve` with latency: more than the old
fixed 8 uploads go in flight while answers stay fast, fewer once the server errs, and a
fixed ``concurrency`` is never exceeded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import ServerProcess
from synccli import write

from syncd.config import MirrorConfig
from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.settings import RemoteSettings
from syncd.state.ledger import Ledger
from syncd.sync.engine import SyncEngine


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.open(tmp_path / "state" / "ledger.db")
    yield led
    led.close()


def remote_for(server: ServerProcess) -> HttpFilesRemote:
    settings = RemoteSettings(
        base_url=server.base_url, api_key=server.client_key, max_attempts=2, backoff_base=0.01
    )
    return HttpFilesRemote(settings, pool_size=66)


def fill(folder: Path, prefix: str, count: int) -> None:
    for n in range(count):
        write(folder, f"{prefix}/{n:04}.txt", f"{prefix} {n}")


def test_concurrency_rises_above_8_and_drops_after_errors(
    server: ServerProcess, tmp_path: Path, ledger: Ledger
) -> None:
    """With 40 ms per request and no errors the limit climbs past 8 (and that many are
    in flight); when every upload then fails with 503 it falls to its lower bound."""
    folder = tmp_path / "data"
    fill(folder, "a", 240)
    server.set_faults({"latency_ms": 40})
    remote = remote_for(server)
    engine = SyncEngine(MirrorConfig(folder=folder), ledger, remote)
    assert engine.run_pass().in_sync
    risen = engine.slots.limit.current
    assert risen > 8 and engine.slots.peak > 8, (risen, engine.slots.peak)
    fill(folder, "b", 120)
    server.set_faults(
        {"latency_ms": 40, "error_rate": 1.0, "error_statuses": [503], "routes": ["create"]}
    )
    failed = engine.run_pass()
    assert len(failed.failures) == 120
    assert engine.slots.limit.current < risen and engine.slots.limit.current == 4
    remote.close()


def test_a_fixed_concurrency_is_a_cap(
    server: ServerProcess, tmp_path: Path, ledger: Ledger
) -> None:
    """``concurrency = 3`` (a key or --concurrency): never more than 3 in flight."""
    folder = tmp_path / "data"
    fill(folder, "a", 60)
    server.set_faults({"latency_ms": 20})
    remote = remote_for(server)
    mirror = MirrorConfig(folder=folder).with_overrides(concurrency=3)
    assert not mirror.adaptive_concurrency and mirror.max_in_flight == 3
    engine = SyncEngine(mirror, ledger, remote)
    assert engine.run_pass().in_sync
    assert engine.slots.peak == 3 and engine.slots.limit.current == 3
    remote.close()
