"""When and how long to wait before trying a Files API request again.

Three parts, each usable alone:

- ``parse_retry_after`` reads a server's Retry-After (``retry-after-ms``, else
  ``retry-after`` in seconds or as an HTTP date).
- ``RetryGate``: one per remote, shared by every worker thread. A 429 (or any answer
  carrying a Retry-After) seen by *any* worker pauses *every* request of every worker
  until it runs out; the HTTP layer calls ``wait()`` immediately before each request
  is sent. Requests already past the gate when the pause starts (in flight) go on.
  ``interrupt()`` (a stop) ends the waits with ``StoppedError``: nothing is sent.
- ``RetryPolicy.retrying()``: a tenacity ``Retrying`` that retries only
  ``RetryableError`` -- never ``AmbiguousError``, whose request may have taken effect --
  a few times per call, with exponential backoff and full jitter, waiting at least the
  server's Retry-After, and logging each retry.

Long Retry-After values. The official SDK waits a Retry-After of at most 120 s and
treats a longer one as "do not retry now". syncd does the same per call: a Retry-After
up to ``max_retry_after`` (120 s) is waited out; a longer one still pauses the gate for
its whole length (so no request reaches the server while it runs), but calls then fail
at once with ``RateLimitedError`` whose ``retry_after`` says how long is left, instead of
blocking a worker for minutes; the caller defers that file (per-file backoff). Values are
capped at ``RETRY_AFTER_CEILING`` (one day) so that a broken header cannot stall syncd
for ever.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import structlog
import tenacity

from syncd.errors import RateLimitedError, RemoteError, StoppedError, Verdict

RETRY_AFTER_CEILING = 86_400.0
DEFAULT_MAX_RETRY_AFTER = 120.0
# A 429 without any Retry-After still pauses every worker, for this long.
DEFAULT_RATE_LIMIT_PAUSE = 1.0

log = structlog.get_logger(__name__)


def _seconds(value: float) -> float | None:
    if not math.isfinite(value) or value < 0:
        return None
    return min(value, RETRY_AFTER_CEILING)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, or None if it asks nothing usable.

    ``headers`` must look names up case-insensitively (``httpx.Headers`` does; a plain
    dict must use lower-case keys). ``retry-after-ms`` (milliseconds) wins over
    ``retry-after`` (delta-seconds or an HTTP date, measured against ``now``, unix time,
    default the current time). Negative values, dates in the past and garbage give None;
    values above ``RETRY_AFTER_CEILING`` are capped to it.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            seconds = _seconds(float(raw_ms.strip()) / 1000.0)
        except ValueError:
            seconds = None
        if seconds is not None:
            return seconds
    raw = headers.get("retry-after")
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    try:
        return _seconds(float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive result means no zone was given
        return None
    current = time.time() if now is None else now
    return _seconds(when.timestamp() - current)


def full_jitter_backoff(
    retry_number: int,
    base: float = 0.5,
    cap: float = 8.0,
    rng: random.Random | None = None,
) -> float:
    """A wait drawn uniformly from [0, min(cap, base * 2**retry_number)].

    ``retry_number`` counts from 0 for the first retry. Full jitter spreads workers that
    failed together over the whole window, so they do not come back in one burst.
    """
    bound = min(cap, base * (2.0 ** max(0, retry_number)))
    return (rng or random).uniform(0.0, bound)


class RetryGate:
    """One gate shared by all workers: while a pause is in force, no request is sent.

    Thread-safe. ``pause_for`` extends the pause (it never shortens one already in force);
    ``wait`` blocks until the pause is over. A pause longer than ``max_block`` is not
    waited out: ``wait`` raises ``RateLimitedError`` with the time left, so the caller can
    defer the work instead of tying up a thread (see the module docstring).
    """

    def __init__(
        self,
        *,
        max_block: float = DEFAULT_MAX_RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_block = max_block
        self._clock = clock
        self._cond = threading.Condition()
        self._paused_until = 0.0
        self._interrupted = False

    def pause_for(self, seconds: float) -> None:
        """Pause every request for ``seconds`` from now, unless a longer pause is running."""
        if not seconds > 0:
            return
        with self._cond:
            until = self._clock() + min(seconds, RETRY_AFTER_CEILING)
            if until > self._paused_until:
                self._paused_until = until
            self._cond.notify_all()  # waiters re-read the deadline

    def remaining(self) -> float:
        """Seconds left of the current pause (0.0 when requests may go)."""
        with self._cond:
            return max(0.0, self._paused_until - self._clock())

    def interrupt(self) -> None:
        """A stop: every wait, now and until ``resume``, raises ``StoppedError`` at once."""
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._interrupted = False

    def wait(self) -> None:
        """Block while a pause is in force; RateLimitedError if it is longer than max_block,
        StoppedError if interrupted."""
        with self._cond:
            while True:
                left = self._paused_until - self._clock()
                if left <= 0:
                    return
                if self._interrupted:
                    raise StoppedError(
                        f"stopped during the server's {left:.1f} s rate-limit pause; nothing sent"
                    )
                if left > self._max_block:
                    raise RateLimitedError(
                        f"the server asked to pause all requests for {left:.0f} s more",
                        status=429,
                        retry_after=left,
                    )
                self._cond.wait(left)


def is_retried(exc: BaseException) -> bool:
    """What tenacity retries: errors whose verdict is RETRYABLE (certainly not carried
    out). ``AmbiguousError`` and ``StoppedError`` have verdicts of their own and are never
    retried here."""
    return isinstance(exc, RemoteError) and exc.verdict is Verdict.RETRYABLE


def retry_after_of(exc: BaseException | None) -> float | None:
    return exc.retry_after if isinstance(exc, RemoteError) else None


class _StopOnLongRetryAfter(tenacity.stop.stop_base):
    """Stop when the server asks for a longer wait than we honour inside one call."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = retry_after_of(exc)
        return retry_after is not None and retry_after > self.limit


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one call; see the module docstring."""

    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    rng: random.Random = field(default_factory=random.Random, compare=False)
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def wait_seconds(self, retry_number: int, retry_after: float | None) -> float:
        """The wait before retry ``retry_number`` (0-based): at least the Retry-After."""
        jitter = full_jitter_backoff(retry_number, self.backoff_base, self.backoff_cap, self.rng)
        return max(retry_after or 0.0, jitter)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self.wait_seconds(state.attempt_number - 1, retry_after_of(exc))

    def retrying(
        self, operation: str, on_retry: Callable[[], None] | None = None
    ) -> tenacity.Retrying:
        """A fresh tenacity ``Retrying`` for one call (``operation`` names it in the log;
        ``on_retry`` is called before each retry's wait, e.g. to count it).

        Retries only what ``is_retried`` accepts, at most ``max_attempts`` attempts in
        all, never when the Retry-After exceeds ``max_retry_after``; re-raises the last
        error unchanged (never ``tenacity.RetryError``).
        """

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            if on_retry is not None:
                on_retry()
            log.warning(
                "remote_retry",
                action=operation,
                attempt=state.attempt_number,
                status=getattr(exc, "status", None),
                wait=round(wait, 3),
                error=str(exc),
            )

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_retried),
            stop=tenacity.stop_any(
                tenacity.stop_after_attempt(self.max_attempts),
                _StopOnLongRetryAfter(self.max_retry_after),
            ),
            wait=self._wait,
            before_sleep=log_retry,
            sleep=self.sleep,
            reraise=True,
        )
