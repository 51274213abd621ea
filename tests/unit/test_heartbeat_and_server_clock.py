"""The signs of life written while uploads are in flight, and the server-clock offset
measured from answers and uploads, kept in the ledger."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from syncd.state.ledger import META_HEARTBEAT, Ledger
from syncd.sync.heartbeat import Heartbeat
from syncd.sync.ownership import UNMEASURED
from syncd.sync.server_clock import ServerClock
from syncd.testing import MemoryRemote

T = 1_700_000_000.0


@pytest.fixture
def ledger(tmp_path: Path):  # type: ignore[no-untyped-def]
    led = Ledger.open(tmp_path / "l.db", registry=None)
    yield led
    led.close()


def beats(ledger: Ledger) -> float | None:
    value = ledger.get_meta(META_HEARTBEAT)
    return float(value) if value else None


def test_the_heartbeat_beats_at_once_then_every_period_until_the_block_ends(
    ledger: Ledger,
) -> None:
    """A beat when uploads start, more while they run (its own thread), none after."""
    clock = iter(range(1, 10_000)).__next__
    heartbeat = Heartbeat(ledger, lambda: float(clock()), period=0.02)
    with heartbeat:
        assert beats(ledger) == 1.0
        deadline = time.monotonic() + 10
        while (beats(ledger) or 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (beats(ledger) or 0) >= 3
    assert heartbeat._thread is None  # stopped and joined: no beat after the block


def test_an_infinite_period_beats_once_and_starts_no_thread(ledger: Ledger) -> None:
    """Deterministic tests get one beat per batch of uploads and no thread."""
    heartbeat = Heartbeat(ledger, lambda: T, period=math.inf)
    with heartbeat:
        assert beats(ledger) == T and heartbeat._thread is None


class DatedRemote(MemoryRemote):
    """A remote whose answers carried these Date samples."""

    def __init__(self, samples: list[tuple[float, float, int]]) -> None:
        super().__init__()
        self.samples = samples

    def date_samples(self) -> list[tuple[float, float, int]]:
        return list(self.samples)

    def request_time_limit(self, size: int) -> float:
        return 600.0


def test_the_offset_is_measured_kept_and_used_by_the_next_process(ledger: Ledger) -> None:
    """Date headers 600 s ahead and an upload's created_at give the offset; it is saved,
    and a new process that has heard nothing yet starts from it."""
    remote = DatedRemote([(T, T + 0.1, int(T) + 600), (T + 5.4, T + 5.5, int(T) + 605)])
    clock = ServerClock(ledger, remote, clock=lambda: T)
    assert clock.offset() == clock.measured()
    clock.note_upload(T + 1.2, T + 1.3, int(T) + 601)
    measured = clock.measured()
    assert measured is not None and measured.low <= 600 <= measured.high
    assert measured.width <= 1.5
    clock.save()
    fresh = ServerClock(ledger, MemoryRemote(), clock=lambda: T)
    assert fresh.measured() is None
    kept = fresh.offset()
    assert kept.measured and abs(kept.low - measured.low) < 0.01


def test_nothing_measured_is_the_fallback(ledger: Ledger) -> None:
    """No Date, no upload, nothing kept: the unmeasured fallback (nothing is sure)."""
    assert ServerClock(ledger, MemoryRemote()).offset() is UNMEASURED
