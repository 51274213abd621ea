"""Request rate limits like the real API's: one token bucket per limited route.

``syncd serve --rate-limit SPEC`` (repeatable; ``EmbeddedServer(rate_limits=...)``)::

    SPEC  = [ROUTE=]COUNT/UNIT[:BURST]
    ROUTE = a route name of ``syncd.server.gate.route_name`` (default ``create``)
    UNIT  = s | min | h | day

``600/min`` limits ``POST /v1/files`` (the only documented limit: 1,000 requests per
minute per user); ``create=600/min --rate-limit list=100/s`` limits two routes, each
with its own bucket. A route may be named once.

The bucket holds ``BURST`` tokens (default ``COUNT``: a burst of the whole per-period
count, which is what OpenAI's headers describe) and refills continuously at
``COUNT / UNIT``; it starts full. A request takes one token or is refused. A smaller
``BURST`` rehearses OpenAI's "quantized" enforcement (its guide: 60,000/min may be
enforced as 1,000/s). The server is one user: one bucket per route whatever the key.

Every answer of a limited route that got past authentication carries (allowed and
refused alike; names and meaning as OpenAI's):

- ``x-ratelimit-limit-requests``: ``COUNT``;
- ``x-ratelimit-remaining-requests``: whole tokens left after this request;
- ``x-ratelimit-reset-requests``: time until the bucket is full again, formatted like
  Go's ``time.Duration`` as OpenAI sends it (``6m0s``, ``1s``, ``1.5s``, ``20ms``),
  rounded up to the millisecond.

A refused request is a 429 with type ``requests``, code ``rate_limit_exceeded``, param
null, a message modelled on OpenAI's ("Rate limit reached for requests ... Limit: 600 /
min. Please try again in 100ms. ..."; the exact wording is an assumption), and
``retry-after-ms`` (time until one token is back, rounded up) and ``retry-after`` (the
same in whole seconds, rounded up) — both of which the official SDK honours; that
OpenAI sends both on every 429 is an assumption.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from syncd.errors import ConfigError
from syncd.server.envelope import ApiError

DEFAULT_ROUTE = "create"
UNITS: dict[str, tuple[str, float]] = {
    "s": ("s", 1.0),
    "sec": ("s", 1.0),
    "min": ("min", 60.0),
    "h": ("h", 3600.0),
    "hour": ("h", 3600.0),
    "d": ("day", 86400.0),
    "day": ("day", 86400.0),
}
MAX_COUNT = 10_000_000
_SPEC = re.compile(
    r"(?:(?P<route>[a-z_]+)=)?(?P<count>[0-9]{1,9})/(?P<unit>[a-z]+)(?::(?P<burst>[0-9]{1,9}))?"
)
OPTION = "--rate-limit"


@dataclass(frozen=True)
class RequestRate:
    """``count`` requests per ``period`` seconds, in bursts of at most ``burst``."""

    count: int
    period: float
    unit: str
    burst: int

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        burst = f":{self.burst}" if self.burst != self.count else ""
        return f"{self.count}/{self.unit}{burst}"


def parse_rate_limits(specs: Iterable[str], routes: Iterable[str]) -> dict[str, RequestRate]:
    """``{route: rate}`` from ``--rate-limit`` values; ConfigError (exit 2) naming the option."""
    known = frozenset(routes)
    limits: dict[str, RequestRate] = {}
    for spec in specs:
        match = _SPEC.fullmatch(spec.strip())
        if match is None:
            raise ConfigError(
                f"{OPTION} {spec!r}: expected [ROUTE=]COUNT/UNIT[:BURST], e.g. 600/min or "
                "list=100/s"
            )
        route = match["route"] or DEFAULT_ROUTE
        if route not in known:
            raise ConfigError(
                f"{OPTION} {spec!r}: unknown route {route!r}; routes: {', '.join(sorted(known))}"
            )
        if match["unit"] not in UNITS:
            raise ConfigError(f"{OPTION} {spec!r}: unit must be one of s, min, h, day")
        unit, period = UNITS[match["unit"]]
        count = int(match["count"])
        burst = int(match["burst"]) if match["burst"] is not None else count
        if not 1 <= count <= MAX_COUNT or not 1 <= burst <= MAX_COUNT:
            raise ConfigError(f"{OPTION} {spec!r}: counts must be between 1 and {MAX_COUNT}")
        if route in limits:
            raise ConfigError(f"{OPTION} {spec!r}: route {route!r} is limited twice")
        limits[route] = RequestRate(count=count, period=period, unit=unit, burst=burst)
    return limits


def format_duration(seconds: float) -> str:
    """A duration as Go's ``time.Duration`` prints it, rounded up to the millisecond."""
    ms = max(0, math.ceil(round(seconds * 1000, 6)))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest // 1000}" if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0")
    text = f"{hours}h" if hours else ""
    if hours or minutes:
        text += f"{minutes}m"
    return f"{text}{secs}s"


@dataclass(frozen=True)
class Verdict:
    """One request's outcome at a bucket, with what the headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": format_duration(self.reset_s),
        }


class TokenBucket:
    """``rate.burst`` tokens, refilled at ``rate.per_second``; starts full. Not locked."""

    def __init__(self, rate: RequestRate, now: float) -> None:
        self.rate = rate
        self._tokens = float(rate.burst)
        self._updated = now

    def take(self, now: float) -> Verdict:
        rate = self.rate
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(float(rate.burst), self._tokens + elapsed * rate.per_second)
        self._updated = now
        allowed = self._tokens >= 1.0
        if allowed:
            self._tokens -= 1.0
        return Verdict(
            allowed=allowed,
            limit=rate.count,
            remaining=math.floor(self._tokens),
            reset_s=(rate.burst - self._tokens) / rate.per_second,
            retry_after_s=0.0 if allowed else (1.0 - self._tokens) / rate.per_second,
        )


class RateLimiter:
    """The buckets of every limited route; safe to call from any thread."""

    def __init__(
        self,
        limits: Mapping[str, RequestRate] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = dict(limits or {})
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._buckets = {route: TokenBucket(rate, now) for route, rate in self.limits.items()}

    def limits_route(self, route: str) -> bool:
        return route in self._buckets

    def take(self, route: str) -> Verdict | None:
        """The verdict for one request on ``route``; None if the route is not limited."""
        bucket = self._buckets.get(route)
        if bucket is None:
            return None
        with self._lock:
            return bucket.take(self._clock())


def rate_limited(route: str, method_path: str, verdict: Verdict, rate: RequestRate) -> ApiError:
    """The 429 for a refused request (module docstring)."""
    wait = format_duration(verdict.retry_after_s)
    return ApiError(
        429,
        f"Rate limit reached for requests to {method_path} ({route}) in syncd serve on "
        f"requests per {rate.unit}: Limit: {rate.count} / {rate.unit}. Please try again in "
        f"{wait}. Visit https://platform.openai.com/account/rate-limits to learn more.",
        type="requests",
        code="rate_limit_exceeded",
        headers={**verdict.headers(), **retry_after_headers(verdict.retry_after_s)},
    )


def retry_after_headers(seconds: float) -> dict[str, str]:
    """``retry-after-ms`` and ``retry-after`` (whole seconds), both rounded up, at least 1:
    the SDK ignores a wait of 0 and would back off on its own instead."""
    return {
        "retry-after-ms": str(max(1, math.ceil(round(seconds * 1000, 6)))),
        "retry-after": str(max(1, math.ceil(round(seconds, 6)))),
    }
