"""The adaptive concurrency limit: it rises while latency holds, backs off on latency
growth, errors and 429s, holds still while the pacer paces, and a fixed one never moves."""

from __future__ import annotations

import threading

import pytest

from syncd.sync.concurrency import (
    ADAPTIVE_HIGH,
    ADAPTIVE_LOW,
    AdaptiveLimit,
    Pressure,
    Slots,
    overloaded,
)
from syncd.sync.plan import Action, ActionKind
from syncd.sync.result import Outcome, OutcomeStatus
from syncd.testing import FakeClock


def run_windows(
    limit: AdaptiveLimit, clock: FakeClock, latency_at: dict[int, float] | None, windows: int
) -> list[int]:
    """Feed ``windows`` rounds of ``current`` samples from a server that takes ``capacity``
    requests at 30 ms each and queues the rest; the limit after each round."""
    seen = []
    for _ in range(windows):
        current = limit.current
        latency = model_latency(current) if latency_at is None else latency_at[current]
        clock.advance(latency)
        for _ in range(current):
            limit.on_sample(latency, error=False, now=clock())
        seen.append(limit.current)
    return seen


CAPACITY = 24


def model_latency(concurrency: int) -> float:
    """30 ms until ``CAPACITY`` requests are in flight, then proportionally longer."""
    return 0.030 * max(1.0, concurrency / CAPACITY)


def test_limit_rises_without_latency_growth_up_to_the_bound() -> None:
    """Answers as fast with more in flight: the limit grows fast, to its upper bound."""
    clock = FakeClock()
    limit = AdaptiveLimit(initial=8)
    seen = run_windows(limit, clock, dict.fromkeys(range(1, 65), 0.030), 12)
    assert seen[0] > 8 and seen[2] >= 16
    assert seen[-1] == ADAPTIVE_HIGH


def test_limit_settles_near_what_the_server_can_take() -> None:
    """Against a server that queues beyond 24 in flight, the limit ends up around 24."""
    clock = FakeClock()
    limit = AdaptiveLimit(initial=8)
    seen = run_windows(limit, clock, None, 60)
    assert max(seen) > CAPACITY
    assert CAPACITY * 0.6 <= sum(seen[-20:]) / 20 <= CAPACITY * 1.6


def test_an_error_cuts_the_limit_once_per_window() -> None:
    """An error (429, 5xx, timeout) lowers the limit at once; a burst of them in the same
    window lowers it only once; it never goes below the lower bound."""
    clock = FakeClock()
    limit = AdaptiveLimit(initial=40)
    limit.on_sample(0.03, error=True, now=clock())
    assert limit.current == 28
    for _ in range(5):
        limit.on_sample(0.03, error=True, now=clock())
    assert limit.current == 28
    for _ in range(30):
        clock.advance(0.03)
        for _ in range(limit.current):
            limit.on_sample(0.03, error=True, now=clock())
    assert limit.current == ADAPTIVE_LOW


def test_a_429_counted_by_the_pacer_is_an_error() -> None:
    """A 429 the transport retried (the action itself succeeded) still lowers the limit."""
    clock = FakeClock()
    seen = Pressure()
    limit = AdaptiveLimit(initial=20, pressure=lambda: seen)
    limit.on_sample(0.03, error=False, now=clock())
    assert limit.current == 20
    seen = Pressure(rate_limited=1)
    limit.on_sample(0.03, error=False, now=clock())
    assert limit.current == 14


def test_paced_holds_the_limit_still() -> None:
    """While the pacer holds requests back, slow answers (time spent waiting for the
    pacer) do not lower the limit, and fast ones do not raise it."""
    clock = FakeClock()
    limit = AdaptiveLimit(initial=12, pressure=lambda: Pressure(paced=True))
    latencies = {12: 0.5}
    assert run_windows(limit, clock, latencies, 10) == [12] * 10


def test_latency_growth_lowers_the_limit() -> None:
    """The same throughput with answers twice as slow: the limit goes down."""
    clock = FakeClock()
    limit = AdaptiveLimit(initial=16)
    latencies = dict.fromkeys(range(1, 65), 0.2)
    latencies[16] = 0.030
    run_windows(limit, clock, latencies, 1)  # the baseline: 30 ms at 16
    assert limit.current == 24
    seen = run_windows(limit, clock, latencies, 5)
    assert seen[-1] < 24


def test_a_fixed_limit_never_moves() -> None:
    """``--concurrency N``: errors, latency, nothing changes it."""
    clock = FakeClock()
    limit = AdaptiveLimit.fixed(8)
    assert not limit.adaptive
    for n in range(100):
        limit.on_sample(0.03 * n, error=n % 3 == 0, now=clock())
    assert limit.current == 8


def test_bounds_are_checked() -> None:
    """A limit needs 1 <= low <= high; the start is clamped into them."""
    with pytest.raises(ValueError):
        AdaptiveLimit(low=0)
    assert AdaptiveLimit(initial=100).current == ADAPTIVE_HIGH
    assert AdaptiveLimit(initial=1).current == ADAPTIVE_LOW


def test_what_counts_as_overload() -> None:
    """Retryable failures and lost answers are errors; permanent ones, runs that did not
    happen and large transfers are no sample."""
    action = Action(ActionKind.UPLOAD, "a", "new")
    assert overloaded(Outcome(action, OutcomeStatus.DONE, bytes=10)) is False
    assert overloaded(Outcome(action, OutcomeStatus.DONE, bytes=1 << 30)) is None
    assert overloaded(Outcome(action, OutcomeStatus.AMBIGUOUS)) is True
    assert overloaded(Outcome(action, OutcomeStatus.FAILED)) is True
    assert overloaded(Outcome(action, OutcomeStatus.FAILED, permanent=True)) is False
    assert overloaded(Outcome(action, OutcomeStatus.NOT_RUN)) is None
    assert overloaded(None) is None


def test_slots_hold_at_most_the_limit_and_interrupt_wakes_waiters() -> None:
    """No more holders than the limit; an interrupt makes waiting acquires return False."""
    clock = FakeClock()
    slots = Slots(AdaptiveLimit.fixed(2), clock)
    assert slots.acquire() and slots.acquire()
    answers: list[bool] = []
    waiter = threading.Thread(target=lambda: answers.append(slots.acquire()))
    waiter.start()
    waiter.join(0.1)
    assert waiter.is_alive()  # the third waits
    slots.interrupt()
    waiter.join(5)
    assert answers == [False]
    slots.release(0.01, None)
    slots.resume()
    assert slots.acquire() and slots.peak == 2
