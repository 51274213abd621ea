"""DirtyPathAggregator: per-path debounce, max delay, rescan flag, bounded memory."""

from __future__ import annotations

import threading

import pytest

from syncd.local.watch.aggregator import DirtyPathAggregator


def test_path_is_ready_only_after_quiet_for_debounce() -> None:
    """A hinted path is held back until no hint arrived for `debounce` seconds."""
    agg = DirtyPathAggregator(debounce=1.0)
    agg.note("a.txt", now=10.0)
    assert agg.ready(10.5) == []
    assert agg.ready(11.0) == ["a.txt"]


def test_ready_removes_paths_so_each_is_handed_out_once() -> None:
    """Once handed out, a path is gone until it is hinted again."""
    agg = DirtyPathAggregator(debounce=1.0)
    agg.note("a.txt", now=0.0)
    assert agg.ready(5.0) == ["a.txt"]
    assert agg.ready(6.0) == []
    assert len(agg) == 0


def test_repeated_hints_coalesce_into_one_path() -> None:
    """Many events for one path produce a single ready entry."""
    agg = DirtyPathAggregator(debounce=1.0)
    for tick in range(5):
        agg.note("a.txt", now=tick * 0.1)
    assert len(agg) == 1
    assert agg.ready(10.0) == ["a.txt"]


def test_a_path_still_being_touched_keeps_getting_deferred() -> None:
    """Each new hint restarts the quiet period of that path only."""
    agg = DirtyPathAggregator(debounce=1.0, max_delay=100.0)
    agg.note("busy", now=0.0)
    agg.note("calm", now=0.0)
    agg.note("busy", now=0.8)
    assert agg.ready(1.0) == ["calm"]
    agg.note("busy", now=1.5)
    assert agg.ready(2.4) == []
    assert agg.ready(2.5) == ["busy"]


def test_a_file_written_forever_is_released_after_max_delay() -> None:
    """max_delay after the first hint the path is handed out even if hints keep coming."""
    agg = DirtyPathAggregator(debounce=1.0, max_delay=10.0)
    now = 0.0
    released: list[str] = []
    while now < 20.0 and not released:
        agg.note("log.jsonl", now=now)
        now += 0.5
        released = agg.ready(now)
    assert released == ["log.jsonl"]
    assert now == pytest.approx(10.0)


def test_default_max_delay_is_at_least_a_minute_and_ten_debounces() -> None:
    """Without max_delay, it is max(60 s, 10 * debounce)."""
    assert DirtyPathAggregator(debounce=1.0).max_delay == 60.0
    assert DirtyPathAggregator(debounce=30.0).max_delay == 300.0


def test_ready_paths_come_back_sorted() -> None:
    """Ready paths are returned in a stable (sorted) order."""
    agg = DirtyPathAggregator(debounce=0.5)
    for path in ("b", "a/", "c.txt", "a/x"):
        agg.note(path, now=0.0)
    assert agg.ready(1.0) == ["a/", "a/x", "b", "c.txt"]


def test_next_due_says_how_long_to_wait() -> None:
    """next_due gives the seconds until the earliest path is due, None when idle."""
    agg = DirtyPathAggregator(debounce=2.0)
    assert agg.next_due(0.0) is None
    agg.note("a", now=1.0)
    agg.note("b", now=1.5)
    assert agg.next_due(1.5) == pytest.approx(1.5)
    assert agg.next_due(9.0) == 0.0


def test_rescan_flag_is_consumed_once() -> None:
    """note_rescan sets a flag that take_rescan returns once, then clears."""
    agg = DirtyPathAggregator()
    assert agg.take_rescan() is False
    agg.note_rescan()
    agg.note_rescan()
    assert agg.take_rescan() is True
    assert agg.take_rescan() is False


def test_too_many_pending_paths_turn_into_one_rescan() -> None:
    """Past max_paths the hints are dropped and a full rescan is requested instead."""
    agg = DirtyPathAggregator(debounce=1.0, max_paths=3)
    for index in range(3):
        agg.note(f"f{index}", now=0.0)
    agg.note("f0", now=0.1)  # already pending: no growth, no rescan
    assert agg.take_rescan() is False
    agg.note("f3", now=0.2)
    assert len(agg) == 0
    assert agg.take_rescan() is True
    agg.note("f4", now=0.3)
    assert agg.ready(5.0) == ["f4"]


@pytest.mark.parametrize(
    ("debounce", "max_delay", "max_paths"), [(-1.0, None, 10), (5.0, 1.0, 10), (1.0, None, 0)]
)
def test_nonsense_settings_are_refused(
    debounce: float, max_delay: float | None, max_paths: int
) -> None:
    """Negative debounce, max_delay below debounce, or no room at all raise ValueError."""
    with pytest.raises(ValueError):
        DirtyPathAggregator(debounce=debounce, max_delay=max_delay, max_paths=max_paths)


def test_concurrent_notes_lose_no_path() -> None:
    """Hints noted from several threads at once all end up pending exactly once."""
    agg = DirtyPathAggregator(debounce=0.0)
    barrier = threading.Barrier(4)

    def writer(worker: int) -> None:
        barrier.wait()
        for index in range(2000):
            agg.note(f"w{worker}/f{index % 500}", now=float(index))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ready = agg.ready(1e9)
    assert len(ready) == 4 * 500
    assert len(set(ready)) == len(ready)
