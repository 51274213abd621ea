"""Pacing requests under a server's rate limit: a token bucket per route, shared by all.

The real API allows ``POST /files`` 1,000 requests per minute per user. Learning that
from 429 answers alone, with 8 or 64 uploads in flight, is a storm of refusals; a
``Pacer`` instead spaces the requests of each route (``route_of``: ``create``,
``list``, ``upload_part``, ...) so that the limit is reached but not crossed. There is
one ``Pacer`` per server, held by its ``Transport`` beside the ``RetryGate`` and shared
by every worker of every mirror; ``Transport`` calls ``acquire`` right before a request
goes out and ``observe`` with its answer.

A route's pace is the smallest of what is known about it (``RouteBudget.rate``):

- **configured**: ``max_uploads_per_minute`` (``PacingConfig``; for ``create`` only),
  by default 1,000/min for ``api.openai.com`` and nothing for other servers
  (``pacing_for``). The Uploads API's endpoints have no documented limit: they are not
  paced unless a server's headers or 429s say so, like every other route.
- **server limit**: ``x-ratelimit-limit-requests`` / ``-remaining-requests`` /
  ``-reset-requests`` (``RateHeaders``; a duration like ``6m0s``, ``1s``, ``20ms``,
  ``1m30.5s``, parsed strictly). For a token bucket, ``reset`` is the time to refill the
  ``limit - remaining`` tokens used, so each answer bounds the refill rate from both
  sides (``RateBounds``); when ``limit`` per second, minute, hour or day lies within
  the bounds that is the rate (OpenAI states its limits per minute), otherwise the
  lower bound. A malformed or absent header is ignored. ``remaining`` 0 holds the route
  until one request's worth is back.
- **after 429s** (AIMD): a 429 halves the pace (from the rate then in force, or the rate
  requests were being sent at when there was none), once per round trip: 429s of
  requests sent before the last decrease, or within ``HOLD_OFF`` of it (a server's
  window remembers the burst that caused it), are not counted again. Each later request
  that had to wait adds back 10 % of the rate before the decrease per second (5 % after
  90 % of it; beyond it the pace grows by 5 % a second, probing), up to the configured
  or known limit, where AIMD lets go. So an unknown limit is found without a storm. The 429's
  ``Retry-After`` still pauses everything through the ``RetryGate``.

With nothing known (another server, no headers, no config) a route is not paced until
its first 429. ``PacingConfig(learn=False)`` (``max_uploads_per_minute = 0``) turns
pacing off: only the gate handles 429s, as before.

Requests are spaced one by one (a bucket of one token: after a quiet spell nothing is
saved up for a burst), each reserving the next slot, so waiting workers leave in turn.
A wait ends early when a stop is requested (``interrupt``): ``StoppedError``, nothing
sent. ``status()`` reports each route's pace (``syncd.remote.protocol.PacingStatus``).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from syncd.errors import StoppedError
from syncd.remote.protocol import PacingStatus

OPENAI_HOST = "api.openai.com"
OPENAI_UPLOADS_PER_MINUTE = 1000  # the documented limit of POST /files, per user
CREATE_ROUTE = "create"
MIN_RATE = 1.0 / 60.0  # AIMD never paces slower than one request a minute
DECREASE = 0.5
HOLD_OFF = 1.0  # seconds after a decrease in which further 429s do not decrease again
KNEE = 0.9  # recover fast up to this share of the rate before the decrease ...
FAST_RECOVERY = 0.10  # ... adding this share of it per second ...
SLOW_RECOVERY = 0.05  # ... then this share per second up to it ...
PROBE = 0.05  # ... and beyond it growing by this share of the current rate per second
MAX_STEP_SECONDS = 1.0  # an increase counts at most this much time since the last one
SEND_WINDOW = 1.0  # seconds of sends that measure the rate requests go at
PACED_GAP = 10.0  # no wait for this long ends a stretch of pacing
PERIODS = (1.0, 60.0, 3600.0, 86400.0)  # a limit may be per second, minute, hour, day
CANDIDATE_SLACK = 0.02  # rounding of the reset header
MAX_HEADER_DIGITS = 12
MAX_RESET_SECONDS = 86400.0

_ROUTES = (
    ("POST", re.compile(r"(?:^|/)files/?$"), "create"),
    ("GET", re.compile(r"(?:^|/)files/?$"), "list"),
    ("GET", re.compile(r"(?:^|/)files/[^/]+/content$"), "content"),
    ("GET", re.compile(r"(?:^|/)files/[^/]+$"), "retrieve"),
    ("DELETE", re.compile(r"(?:^|/)files/[^/]+$"), "delete"),
    ("POST", re.compile(r"(?:^|/)uploads/?$"), "upload_create"),
    ("POST", re.compile(r"(?:^|/)uploads/[^/]+/parts$"), "upload_part"),
    ("POST", re.compile(r"(?:^|/)uploads/[^/]+/complete$"), "upload_complete"),
    ("POST", re.compile(r"(?:^|/)uploads/[^/]+/cancel$"), "upload_cancel"),
)


def route_of(method: str, path: str) -> str:
    """The operation a request is for (``create``, ``list``, ...; names as
    ``syncd serve``'s), from its method and URL path; ``METHOD other`` otherwise."""
    for route_method, pattern, name in _ROUTES:
        if method == route_method and pattern.search(path):
            return name
    return f"{method} other"


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class PacingConfig:
    """What a remote's ``Pacer`` starts from: a ceiling for ``POST /files`` in requests
    per minute (None: none configured) and where it comes from; ``learn`` False turns
    pacing off altogether (no headers, no AIMD)."""

    uploads_per_minute: float | None = None
    source: str = "configured"
    learn: bool = True


def pacing_for(base_url: str, per_mirror: Sequence[int | None] = ()) -> PacingConfig:
    """The pacing of one remote shared by mirrors whose ``max_uploads_per_minute`` are
    ``per_mirror`` (None: unset; 0: off; N: at most N per minute).

    The limit is per account, so the mirrors sharing a remote share one budget, and the
    slowest wins: the smallest of the values set, and of the default where a mirror
    leaves it unset (1,000/min for api.openai.com, none elsewhere). Pacing is off only
    when every mirror sets 0. No mirror (pull, verify, ls): the default.
    """
    host = (urlsplit(base_url).hostname or "").lower()
    default = OPENAI_UPLOADS_PER_MINUTE if host == OPENAI_HOST else None
    values = list(per_mirror) or [None]
    limits: list[tuple[float, str]] = []
    learn = False
    for value in values:
        if value == 0:
            continue
        learn = True
        if value is not None:
            limits.append((float(value), "configured"))
        elif default is not None:
            limits.append((float(default), f"default for {OPENAI_HOST}"))
    if not learn:
        return PacingConfig(None, learn=False)
    if not limits:
        return PacingConfig(None)
    limit, source = min(limits)
    return PacingConfig(limit, source)


# -- the rate-limit headers ------------------------------------------------------------

_DURATION_PART = re.compile(r"([0-9]{1,12})(?:\.([0-9]{1,9}))?(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
_UNIT_SECONDS["ns"] = 1e-9


def parse_duration(text: str) -> tuple[float, float] | None:
    """A Go ``time.Duration`` as OpenAI sends it (``6m0s``, ``1s``, ``20ms``,
    ``1m30.5s``, ``0``): ``(seconds, precision)``, the precision being half the last
    digit's unit (``1s``: 0.5 s). None for anything else: signs, spaces, unknown units,
    an empty string, more than a day."""
    text = text.strip()
    if text == "0":
        return 0.0, 0.0
    position, total, precision = 0, 0.0, 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            return None
        whole, fraction, unit = match.groups()
        scale = _UNIT_SECONDS[unit]
        total += (int(whole) + (int(fraction) / 10 ** len(fraction) if fraction else 0)) * scale
        precision = scale / (10 ** len(fraction) if fraction else 1) / 2
        position = match.end()
    if position == 0 or not math.isfinite(total) or total > MAX_RESET_SECONDS:
        return None
    return total, precision


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > MAX_HEADER_DIGITS:
        return None
    return int(value)


@dataclass(frozen=True)
class RateHeaders:
    """One answer's ``x-ratelimit-*-requests`` headers."""

    limit: int
    remaining: int
    reset: float
    precision: float

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateHeaders | None:
        """The three headers, or None when one is absent or malformed (``remaining``
        above ``limit`` included): a bad header is ignored, never an error."""
        limit = _count(headers.get("x-ratelimit-limit-requests"))
        remaining = _count(headers.get("x-ratelimit-remaining-requests"))
        raw_reset = headers.get("x-ratelimit-reset-requests")
        reset = parse_duration(raw_reset) if raw_reset is not None else None
        if limit is None or remaining is None or reset is None:
            return None
        if limit < 1 or remaining > limit:
            return None
        return cls(limit, remaining, reset[0], reset[1])


class RateBounds:
    """What a server's headers say of its refill rate: ``lo <= rate <= hi`` (requests
    per second), narrowed by every answer, started afresh when ``limit`` changes or the
    answers contradict each other (module docstring)."""

    def __init__(self) -> None:
        self.limit: int | None = None
        self.lo = 0.0
        self.hi = math.inf

    def add(self, headers: RateHeaders) -> None:
        if headers.limit != self.limit:
            self.limit, self.lo, self.hi = headers.limit, 0.0, math.inf
        used = headers.limit - headers.remaining
        if used < 1:
            return  # a full bucket says nothing of the rate
        # ``remaining`` is whole tokens: between used - 1 and used were taken.
        slow = headers.reset + headers.precision
        fast = headers.reset - headers.precision
        lo = (used - 1) / slow if slow > 0 else 0.0
        hi = used / fast if fast > 0 else math.inf
        if max(self.lo, lo) > min(self.hi, hi) * (1 + CANDIDATE_SLACK):
            self.lo, self.hi = lo, hi  # a change of limit or of rules: this answer counts
        else:
            self.lo, self.hi = max(self.lo, lo), min(self.hi, hi)

    def rate(self) -> float | None:
        """The limit per second, minute, hour or day that fits the bounds (the fastest
        that does), else the lower bound; None when nothing is known, or when the
        headers fit no bucket of ``limit`` requests refilled over a second or more
        (a server whose bucket is smaller than its stated limit: AIMD finds its pace)."""
        if self.limit is None:
            return None
        for period in PERIODS:
            candidate = self.limit / period
            if self.lo * (1 - CANDIDATE_SLACK) <= candidate <= self.hi * (1 + CANDIDATE_SLACK):
                return candidate
        if 0 < self.lo <= self.limit / PERIODS[0]:
            return self.lo
        return None


# -- one route -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    """A request let through: its route, when it left, whether it had to wait."""

    route: str
    sent_at: float
    waited: bool


class RouteBudget:
    """The pace of one route (module docstring). Not locked: the ``Pacer`` holds its
    lock around every call. ``now`` is monotonic seconds, ``wall`` unix time."""

    def __init__(self, route: str, configured: float | None, source: str) -> None:
        self.route = route
        self.configured = configured  # requests per second, or None
        self.configured_source = source
        self.bounds = RateBounds()
        self.known: float | None = None  # from the headers
        self.aimd: float | None = None  # after 429s
        self._before_decrease = 0.0
        self._last_decrease = -math.inf
        self._last_increase = -math.inf
        self._next_slot = -math.inf
        self._hold_until = -math.inf
        self._sends: deque[float] = deque()
        self._last_delay = -math.inf
        self.waiting = 0
        self.paced_since: float | None = None
        self.delayed_requests = 0
        self.delayed_seconds = 0.0
        self.rate_limited = 0
        self.requests = 0

    def rate(self) -> tuple[float | None, str | None]:
        """The pace in force (requests per second) and where it comes from."""
        found = [
            (rate, source)
            for rate, source in (
                (self.aimd, "after 429s"),
                (self.known, "server limit"),
                (self.configured, self.configured_source),
            )
            if rate is not None
        ]
        return min(found, key=lambda pair: pair[0]) if found else (None, None)

    def ceiling(self) -> float | None:
        limits = [r for r in (self.known, self.configured) if r is not None]
        return min(limits) if limits else None

    def reserve(self, now: float) -> float:
        """Take the next slot; the seconds to wait for it."""
        self.requests += 1
        self._sends.append(now)
        while self._sends and self._sends[0] < now - SEND_WINDOW:
            self._sends.popleft()
        rate, _ = self.rate()
        slot = max(now, self._hold_until)
        if rate is not None:
            slot = max(slot, self._next_slot)
            self._next_slot = slot + 1.0 / rate
        return slot - now

    def delayed(self, seconds: float, now: float, wall: float) -> None:
        if now - self._last_delay > PACED_GAP or self.paced_since is None:
            self.paced_since = wall
        self._last_delay = now
        self.delayed_requests += 1
        self.delayed_seconds += seconds

    def current_since(self, now: float) -> float | None:
        """When the current stretch of pacing began (None: no request waited lately)."""
        if self.waiting or now - self._last_delay <= PACED_GAP:
            return self.paced_since
        return None

    def sending_rate(self, now: float) -> float:
        recent = [t for t in self._sends if t >= now - SEND_WINDOW]
        return max(len(recent), 1) / SEND_WINDOW

    def on_headers(self, headers: RateHeaders, now: float) -> None:
        self.bounds.add(headers)
        self.known = self.bounds.rate()
        if headers.remaining == 0 and headers.reset > 0:
            used = max(1, headers.limit - headers.remaining)
            self._hold_until = max(self._hold_until, now + headers.reset / used)

    def on_rate_limited(self, ticket: Ticket, now: float) -> None:
        self.rate_limited += 1
        if ticket.sent_at <= self._last_decrease or now - self._last_decrease < HOLD_OFF:
            return  # the last decrease already answered for it
        rate, _ = self.rate()
        base = rate if rate is not None else self.sending_rate(now)
        self._before_decrease = base
        self.aimd = max(MIN_RATE, base * DECREASE)
        self._last_decrease = now
        self._last_increase = now

    def on_success(self, ticket: Ticket, now: float) -> None:
        if self.aimd is None or not ticket.waited or ticket.sent_at <= self._last_decrease:
            return
        step = min(MAX_STEP_SECONDS, now - self._last_increase)
        self._last_increase = now
        if step <= 0:
            return
        before = self._before_decrease
        if self.aimd < KNEE * before:
            self.aimd += FAST_RECOVERY * before * step
        elif self.aimd < before:
            self.aimd += SLOW_RECOVERY * before * step
        else:
            self.aimd *= 1 + PROBE * step
        ceiling = self.ceiling()
        if ceiling is not None and self.aimd >= ceiling:
            self.aimd = None  # recovered: the known limit paces again

    def status(self, now: float) -> PacingStatus:
        rate, source = self.rate()
        return PacingStatus(
            route=self.route,
            rate=rate,
            source=source,
            waiting=self.waiting,
            paced_since=self.current_since(now),
            delayed_requests=self.delayed_requests,
            delayed_seconds=round(self.delayed_seconds, 3),
            rate_limited=self.rate_limited,
            requests=self.requests,
        )


# -- the pacer -------------------------------------------------------------------------


class Pacer:
    """Every route's budget for one server; thread-safe (module docstring).

    ``clock`` is monotonic, ``wall`` unix time; ``wait(seconds)`` blocks that long and
    returns True if it was interrupted (default: on the pacer's stop event).
    """

    def __init__(
        self,
        config: PacingConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.config = config or PacingConfig()
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._wait = wait or self._stopped.wait
        self._budgets: dict[str, RouteBudget] = {}
        if self.config.learn and self.config.uploads_per_minute is not None:
            self._budget(CREATE_ROUTE)

    @property
    def enabled(self) -> bool:
        return self.config.learn

    def _budget(self, route: str) -> RouteBudget:
        budget = self._budgets.get(route)
        if budget is None:
            per_minute = self.config.uploads_per_minute if route == CREATE_ROUTE else None
            configured = None if per_minute is None else per_minute / 60.0
            budget = RouteBudget(route, configured, self.config.source)
            self._budgets[route] = budget
        return budget

    def acquire(self, method: str, path: str) -> Ticket | None:
        """Wait for the route's next slot (none when it is not paced); None when pacing
        is off. Raises ``StoppedError`` if a stop comes while it waits (or came before)."""
        if not self.enabled:
            return None
        route = route_of(method, path)
        with self._lock:
            budget = self._budget(route)
            delay = budget.reserve(self._clock())
            if delay > 0:
                budget.waiting += 1
        if delay > 0:
            try:
                if self._stopped.is_set() or self._wait(delay):
                    raise StoppedError(
                        f"stopped while waiting {delay:.1f} s to send ({route}); nothing sent"
                    )
            finally:
                with self._lock:
                    budget.waiting -= 1
                    budget.delayed(delay, self._clock(), self._wall())
        return Ticket(route, self._clock(), delay > 0)

    def observe(self, ticket: Ticket | None, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer to a request ``acquire`` let through."""
        if ticket is None:
            return
        parsed = RateHeaders.parse(headers)
        with self._lock:
            budget = self._budget(ticket.route)
            now = self._clock()
            if parsed is not None:
                budget.on_headers(parsed, now)
            if status == 429:
                budget.on_rate_limited(ticket, now)
            elif status < 400:
                budget.on_success(ticket, now)

    def sleep(self, seconds: float) -> None:
        """Sleep (a retry's backoff); ``StoppedError`` at once if a stop comes."""
        if seconds > 0 and (self._stopped.is_set() or self._wait(seconds)):
            raise StoppedError(f"stopped during a {seconds:.1f} s wait before a retry")

    def interrupt(self) -> None:
        """End every wait now, and every later one at once, until ``resume``."""
        self._stopped.set()

    def resume(self) -> None:
        self._stopped.clear()

    @property
    def interrupted(self) -> bool:
        return self._stopped.is_set()

    def status(self) -> tuple[PacingStatus, ...]:
        """Each route that is paced, or ever had to wait, by route name."""
        with self._lock:
            now = self._clock()
            found = [
                budget.status(now)
                for budget in self._budgets.values()
                if budget.rate()[0] is not None or budget.delayed_requests
            ]
        return tuple(sorted(found, key=lambda s: (s.route != CREATE_ROUTE, s.route)))
