"""How many actions a pass keeps in flight: found from the server's answers, or fixed.

``AdaptiveLimit`` is the controller, a plain object fed one sample per finished action
(its time and whether it failed in a way that says "slow down"), with no thread or
clock of its own, so it is tested with a fake clock. ``Slots`` is the gate the engine's
worker threads pass through: at most ``limit.current`` of them work at once.

The controller (AIMD with a latency signal, after TCP Vegas and Netflix's
concurrency-limits):

- Samples are grouped in windows of about ``current`` samples (one round trip's worth).
  A window's mean time is compared with the *baseline*, the best mean seen this round
  (``new_round``: each pool of actions); it creeps up toward the mean only while the
  limit is at ``low``, so a server that became slower for good is not punished forever.
- No latency growth (mean below ``TOLERANCE`` x baseline): raise the limit, by half
  (slow start) until the first decrease, by ``sqrt(current)`` after it.
- Latency grew: lower it by ``LATENCY_BACKOFF``, unless the window's throughput still
  rose by ``THROUGHPUT_GAIN`` over the last window's (more in flight still helps).
- An error (429, 5xx, timeout, lost answer: what the caller counts) or a 429 the
  remote's pacer counted (``Pressure``) cuts the limit by ``ERROR_BACKOFF``, at most
  once per window: the samples already in flight were sent at the old limit.
- While the remote's pacer holds requests back (``Pressure.paced``), the rate is the
  pacer's: the limit neither grows nor shrinks on latency (waiting at the pacer is not
  the server's latency), so the two never fight; a 429 still lowers it.

Always within ``[low, high]``. A fixed concurrency (``--concurrency N``, a config's
``concurrency``) is ``AdaptiveLimit.fixed(N)``: ``low == high == N``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from syncd.config import MirrorConfig
from syncd.remote.protocol import SupportsPacing
from syncd.sync.result import Outcome, OutcomeStatus

ADAPTIVE_START = 8
ADAPTIVE_LOW = 4
ADAPTIVE_HIGH = 64
MIN_WINDOW = 4  # samples in a window, at least
TOLERANCE = 1.5  # a mean this many times the baseline is latency growth
THROUGHPUT_GAIN = 1.1
LATENCY_BACKOFF = 0.9
ERROR_BACKOFF = 0.7
BASELINE_CREEP = 0.05  # per window at ``low``, the baseline moves this share to the mean
# A transfer this large (the Uploads API's, in parts) takes long for its size, not for
# the server's load: it is no sample of the latency.
LARGE_SAMPLE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Pressure:
    """What the remote's pacer says: 429s counted so far, requests held back now."""

    rate_limited: int = 0
    paced: bool = False


class AdaptiveLimit:
    """The concurrency limit found from samples (module docstring). Not thread-safe on
    its own: ``Slots`` calls it under its lock."""

    def __init__(
        self,
        *,
        initial: int = ADAPTIVE_START,
        low: int = ADAPTIVE_LOW,
        high: int = ADAPTIVE_HIGH,
        pressure: Callable[[], Pressure] | None = None,
    ) -> None:
        if not 1 <= low <= high:
            raise ValueError("need 1 <= low <= high")
        self.low = low
        self.high = high
        self._limit = float(min(high, max(low, initial)))
        self._pressure = pressure
        self._rate_limited = pressure().rate_limited if pressure else 0
        self._slow_start = True
        self._baseline: float | None = None
        self._last_throughput: float | None = None
        self.new_round()

    @classmethod
    def fixed(cls, limit: int) -> AdaptiveLimit:
        """A limit that never moves."""
        return cls(initial=limit, low=limit, high=limit)

    @property
    def adaptive(self) -> bool:
        return self.low < self.high

    @property
    def current(self) -> int:
        return int(self._limit)

    def new_round(self, now: float | None = None) -> None:
        """Forget the window and the baseline (another kind of action starts); keep the
        limit."""
        self._count = 0
        self._total = 0.0
        self._errors = 0
        self._cut_in_window = False
        self._started = now
        self._baseline = None
        self._last_throughput = None

    def on_sample(self, seconds: float, *, error: bool, now: float) -> None:
        """One action finished at ``now`` after ``seconds``; ``error``: it failed in a way
        that says the server is overloaded."""
        if not self.adaptive:
            return
        if self._started is None:
            self._started = now - seconds
        pressure = self._pressure() if self._pressure else Pressure()
        if pressure.rate_limited > self._rate_limited:
            self._rate_limited = pressure.rate_limited
            error = True
        if error:
            self._errors += 1
            if not self._cut_in_window:
                self._cut(ERROR_BACKOFF)
                self._cut_in_window = True
        else:
            self._count += 1
            self._total += seconds
        if self._count + self._errors >= max(MIN_WINDOW, self.current):
            self._close_window(now, pressure.paced)

    def _close_window(self, now: float, paced: bool) -> None:
        count, total, error, started = self._count, self._total, self._errors, self._started
        self._count, self._total, self._errors, self._cut_in_window = 0, 0.0, 0, False
        self._started = now
        if error or count == 0 or paced:
            return
        mean = total / count
        elapsed = now - (started if started is not None else now)
        throughput = count / elapsed if elapsed > 0 else None
        last, self._last_throughput = self._last_throughput, throughput
        baseline = self._baseline
        if baseline is None or mean < baseline:
            self._baseline = mean
            baseline = mean
        elif self._limit <= self.low:  # slower at the bottom too: the server's own pace
            self._baseline = baseline + (mean - baseline) * BASELINE_CREEP
        if mean <= baseline * TOLERANCE:
            step = self._limit * 0.5 if self._slow_start else math.sqrt(self._limit)
            self._limit = min(float(self.high), self._limit + max(1.0, step))
        elif not (throughput and last and throughput >= last * THROUGHPUT_GAIN):
            self._cut(LATENCY_BACKOFF)

    def _cut(self, factor: float) -> None:
        self._slow_start = False
        self._limit = max(float(self.low), self._limit * factor)


class Slots:
    """At most ``limit.current`` holders at once; ``release`` feeds the limit a sample.

    Thread-safe. ``interrupt`` wakes every waiter (``acquire`` returns False) until
    ``resume``; ``width`` is the most threads that can ever hold a slot.
    """

    def __init__(self, limit: AdaptiveLimit, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._cond = threading.Condition()
        self._held = 0
        self._interrupted = False
        self.peak = 0  # the most held at once (for logs and tests)

    @property
    def width(self) -> int:
        return self.limit.high

    def new_round(self) -> None:
        with self._cond:
            self.limit.new_round()

    def acquire(self) -> bool:
        with self._cond:
            while self._held >= self.limit.current and not self._interrupted:
                self._cond.wait()
            if self._interrupted:
                return False
            self._held += 1
            self.peak = max(self.peak, self._held)
            return True

    def release(self, seconds: float, outcome: Outcome | None) -> None:
        """A slot back, after ``seconds`` of work that ended with ``outcome`` (None: it
        raised)."""
        error = overloaded(outcome)
        with self._cond:
            self._held -= 1
            if error is not None:
                self.limit.on_sample(seconds, error=error, now=self._clock())
            self._cond.notify_all()

    def interrupt(self) -> None:
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._interrupted = False


def overloaded(outcome: Outcome | None) -> bool | None:
    """What an outcome says of the server's load: True (a retryable failure or a lost
    answer, after the transport's own retries), False (an answer in time), None (no
    sample: not run, raised, or a large transfer)."""
    if outcome is None:
        return None
    if outcome.status is OutcomeStatus.AMBIGUOUS:
        return True
    if outcome.status is OutcomeStatus.FAILED:
        return not outcome.permanent
    if outcome.status is OutcomeStatus.DONE:
        return None if outcome.bytes >= LARGE_SAMPLE_BYTES else False
    return None


def pacer_pressure(remote: object) -> Callable[[], Pressure] | None:
    """The ``Pressure`` of ``remote``'s pacer, if it paces (``SupportsPacing``)."""
    if not isinstance(remote, SupportsPacing):
        return None

    def pressure() -> Pressure:
        statuses = remote.pacing_status()
        return Pressure(sum(s.rate_limited for s in statuses), any(s.paced for s in statuses))

    return pressure


def slots_for(mirror: MirrorConfig, remote: object) -> Slots:
    """The engine's slots: a fixed ``mirror.concurrency``, or adaptive from it."""
    if not mirror.adaptive_concurrency:
        return Slots(AdaptiveLimit.fixed(mirror.concurrency), time.monotonic)
    limit = AdaptiveLimit(
        initial=mirror.concurrency,
        low=min(ADAPTIVE_LOW, mirror.concurrency),
        high=mirror.max_in_flight,
        pressure=pacer_pressure(remote),
    )
    return Slots(limit, time.monotonic)
