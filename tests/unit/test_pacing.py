"""The client's pacer: header parsing, the rate it infers, spacing, AIMD, stopping."""

from __future__ import annotations

import math
import threading
import time

import pytest

from syncd.errors import StoppedError
from syncd.remote.pacing import (
    OPENAI_UPLOADS_PER_MINUTE,
    Pacer,
    PacingConfig,
    RateBounds,
    RateHeaders,
    pacing_for,
    parse_duration,
    route_of,
)
from syncd.remote.retry import RetryGate
from syncd.server.ratelimit import RequestRate, TokenBucket
from syncd.testing import FakeClock

DEADLINE = 10.0  # generous: a stopped wait ends at once, a paced one would take minutes


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("20ms", 0.02),
        ("1m30.5s", 90.5),
        ("1.5s", 1.5),
        ("2h0m0s", 7200.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("250us", 0.00025),
        ("7µs", 0.000007),
    ],
)
def test_durations_as_openai_sends_them_parse(text: str, seconds: float) -> None:
    """Go durations (h, m, s, ms, us, µs, ns; fractions) give their seconds."""
    parsed = parse_duration(text)
    assert parsed is not None and math.isclose(parsed[0], seconds)


@pytest.mark.parametrize(
    "text",
    [
        *("", " ", "1", "-1s", "+1s", "1 s", "1sec", "s", "1.s", ".5s", "1e3s", "1m-5s"),
        *("inf", "NaN", "\u0661s", "25h0m0s", "1s;", "0x10s", "99999999999999s"),
    ],
)
def test_garbage_durations_are_refused(text: str) -> None:
    """Anything that is not a duration of at most a day is None, never an exception."""
    assert parse_duration(text) is None


def test_duration_precision_is_half_the_last_unit() -> None:
    """``1s`` may be rounded by half a second, ``1.5s`` by 50 ms, ``20ms`` by 0.5 ms."""
    assert parse_duration("1s") == (1.0, 0.5)
    assert parse_duration("1.5s") == (1.5, 0.05)
    precision = parse_duration("20ms")
    assert precision is not None and math.isclose(precision[1], 0.0005)


GOOD = {
    "x-ratelimit-limit-requests": "600",
    "x-ratelimit-remaining-requests": "599",
    "x-ratelimit-reset-requests": "100ms",
}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-ratelimit-limit-requests", None),
        ("x-ratelimit-remaining-requests", None),
        ("x-ratelimit-reset-requests", None),
        ("x-ratelimit-limit-requests", "abc"),
        ("x-ratelimit-limit-requests", "0"),
        ("x-ratelimit-limit-requests", "6.5"),
        ("x-ratelimit-limit-requests", "\u0661\u0662"),
        ("x-ratelimit-limit-requests", "9" * 40),
        ("x-ratelimit-remaining-requests", "-1"),
        ("x-ratelimit-remaining-requests", "601"),
        ("x-ratelimit-reset-requests", "soon"),
        ("x-ratelimit-reset-requests", "-1s"),
        ("x-ratelimit-reset-requests", ""),
    ],
)
def test_malformed_or_absent_headers_are_ignored(name: str, value: str | None) -> None:
    """One header missing or malformed gives None: pacing goes on without them."""
    assert RateHeaders.parse(GOOD) is not None
    headers = {k: v for k, v in GOOD.items() if k != name}
    if value is not None:
        headers[name] = value
    assert RateHeaders.parse(headers) is None


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("POST", "/v1/files", "create"),
        ("GET", "/v1/files", "list"),
        ("GET", "/v1/files/file-1", "retrieve"),
        ("GET", "/v1/files/file-1/content", "content"),
        ("DELETE", "/v1/files/file-1", "delete"),
        ("POST", "/openai/v1/uploads", "upload_create"),
        ("POST", "/v1/uploads/upload_1/parts", "upload_part"),
        ("POST", "/v1/uploads/upload_1/complete", "upload_complete"),
        ("POST", "/v1/uploads/upload_1/cancel", "upload_cancel"),
        ("PUT", "/v1/files", "PUT other"),
    ],
)
def test_routes_are_named_like_the_servers(method: str, path: str, route: str) -> None:
    """Requests map to the route names `syncd serve` limits by."""
    assert route_of(method, path) == route


def test_pacing_per_server_and_mirrors() -> None:
    """api.openai.com gets 1,000/min by default, others nothing; the smallest value set
    wins; 0 turns pacing off only when every mirror says so."""
    openai = "https://api.openai.com/v1"
    assert pacing_for(openai) == PacingConfig(
        OPENAI_UPLOADS_PER_MINUTE, "default for api.openai.com"
    )
    assert pacing_for("http://127.0.0.1:8750/v1") == PacingConfig(None)
    assert pacing_for(openai, [None, 600]) == PacingConfig(600, "configured")
    assert pacing_for(openai, [5000]) == PacingConfig(5000, "configured")
    assert pacing_for(openai, [None, 5000]).uploads_per_minute == OPENAI_UPLOADS_PER_MINUTE
    assert pacing_for("http://h/v1", [900, 300, None]) == PacingConfig(300, "configured")
    assert pacing_for("http://h/v1", [0, 0]).learn is False
    assert pacing_for(openai, [0, None]).uploads_per_minute == OPENAI_UPLOADS_PER_MINUTE
    assert pacing_for("http://h/v1", [0, 200]) == PacingConfig(200, "configured")


def headers_of(bucket: TokenBucket, now: float) -> RateHeaders:
    parsed = RateHeaders.parse(bucket.take(now).headers())
    assert parsed is not None
    return parsed


@pytest.mark.parametrize(
    ("count", "period", "unit"),
    [(600, 60.0, "min"), (1000, 60.0, "min"), (100, 1.0, "s"), (20, 1.0, "s"), (600, 3600.0, "h")],
)
@pytest.mark.parametrize("taken", [1, 2, 7, 50])
def test_the_servers_rate_is_read_from_its_headers(
    count: int, period: float, unit: str, taken: int
) -> None:
    """Headers of `syncd serve`'s token bucket (limit, remaining, reset) give its exact
    rate, whether one request or many have drawn on a full bucket."""
    bucket = TokenBucket(RequestRate(count, period, unit, count), now=0.0)
    bounds = RateBounds()
    for n in range(taken):
        bounds.add(headers_of(bucket, now=n * 0.001))
    rate = bounds.rate()
    assert rate is not None and math.isclose(rate, count / period)


def test_openais_own_example_reads_as_per_minute() -> None:
    """OpenAI's documented answer (limit 60, remaining 59, reset 1s) is 60 per minute."""
    bounds = RateBounds()
    parsed = RateHeaders.parse(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-reset-requests": "1s",
        }
    )
    assert parsed is not None
    bounds.add(parsed)
    assert bounds.rate() == 1.0


def test_a_bucket_smaller_than_its_stated_limit_says_no_rate() -> None:
    """`600/min:1` states 600 but holds one token: the headers fit no bucket of 600, so
    they give no rate (AIMD paces such a server)."""
    bucket = TokenBucket(RequestRate(600, 60.0, "min", 1), now=0.0)
    bounds = RateBounds()
    bounds.add(headers_of(bucket, now=0.0))
    assert bounds.rate() is None


class Clocked:
    """A pacer whose waits move a fake clock instead of sleeping."""

    def __init__(self, config: PacingConfig) -> None:
        self.clock = FakeClock(100.0)
        self.waits: list[float] = []
        self.pacer = Pacer(config, clock=self.clock, wall=self.clock, wait=self.wait)

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.clock.advance(seconds)
        return False

    def send(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        ticket = self.pacer.acquire("POST", "/v1/files")
        self.pacer.observe(ticket, status, headers or {})

    def rate(self) -> float | None:
        (status,) = [s for s in self.pacer.status() if s.route == "create"]
        return status.rate


def test_a_configured_limit_spaces_requests_evenly() -> None:
    """600/min: the first request goes at once, each next one 100 ms after the last."""
    paced = Clocked(PacingConfig(600))
    for _ in range(11):
        paced.send()
    assert len(paced.waits) == 10
    assert all(math.isclose(w, 0.1) for w in paced.waits)
    (status,) = paced.pacer.status()
    assert status.describe() == "uploads paced at 600/min (configured)"
    assert status.delayed_requests == 10 and status.paced


def test_unknown_limit_is_not_paced_until_a_429_then_halved_and_recovered() -> None:
    """No config, no headers: no wait at all; a 429 halves the rate requests went at
    (once: 429s of requests sent before the decrease do not count again); requests that
    wait add it back, up to and then beyond the rate before the decrease."""
    paced = Clocked(PacingConfig(None))
    tickets = [paced.pacer.acquire("POST", "/v1/files") for _ in range(8)]
    assert paced.waits == []
    assert paced.pacer.status() == ()
    for ticket in tickets:
        paced.pacer.observe(ticket, 429, {})
    assert paced.rate() == 4.0  # 8 requests in the last second, halved once
    for _ in range(40):
        paced.send()
    rate = paced.rate()
    assert rate is not None and 7.0 < rate < 8.5
    (status,) = paced.pacer.status()
    assert status.source == "after 429s" and status.rate_limited == 8


def test_aimd_lets_go_once_back_at_the_known_limit() -> None:
    """Below a configured limit AIMD recovers to it and then the limit alone paces."""
    paced = Clocked(PacingConfig(600))
    paced.send()
    paced.send(429)
    assert paced.rate() == 5.0
    for _ in range(100):
        paced.send()
    assert paced.rate() == 10.0
    assert paced.pacer.status()[0].source == "configured"


def test_headers_pace_an_unconfigured_route_at_the_servers_rate() -> None:
    """The first answer of a 600/min bucket is enough: the next requests are spaced 100 ms."""
    paced = Clocked(PacingConfig(None))
    bucket = TokenBucket(RequestRate(600, 60.0, "min", 600), now=paced.clock())
    for _ in range(5):
        ticket = paced.pacer.acquire("POST", "/v1/files")
        paced.pacer.observe(ticket, 200, bucket.take(paced.clock()).headers())
    assert paced.rate() == 10.0
    assert paced.pacer.status()[0].source == "server limit"
    assert all(math.isclose(w, 0.1) for w in paced.waits)


def test_remaining_zero_holds_the_route_until_a_request_is_back() -> None:
    """An answer saying nothing remains holds the next request for one request's time."""
    paced = Clocked(PacingConfig(None))
    paced.send(
        200,
        {
            "x-ratelimit-limit-requests": "10",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "10s",
        },
    )
    paced.send()
    assert paced.waits and math.isclose(paced.waits[0], 1.0, rel_tol=0.01)


def test_pacing_off_never_waits_nor_learns() -> None:
    """learn=False (max_uploads_per_minute 0): no ticket, no wait, nothing learned."""
    paced = Clocked(PacingConfig(None, learn=False))
    assert paced.pacer.acquire("POST", "/v1/files") is None
    paced.pacer.observe(None, 429, {})
    assert paced.pacer.status() == ()


def test_a_stop_ends_a_long_pacing_wait_at_once() -> None:
    """A worker waiting minutes for its slot raises StoppedError as soon as interrupt()
    is called; later waits raise at once until resume()."""
    pacer = Pacer(PacingConfig(1))  # one upload a minute
    pacer.acquire("POST", "/v1/files")
    outcome: list[BaseException | None] = []
    waiting = threading.Thread(
        target=lambda: outcome.append(_raised(lambda: pacer.acquire("POST", "/v1/files")))
    )
    waiting.start()
    _until(lambda: pacer.status()[0].waiting == 1)
    pacer.interrupt()
    waiting.join(DEADLINE)
    assert not waiting.is_alive()
    assert isinstance(outcome[0], StoppedError)
    assert isinstance(_raised(lambda: pacer.sleep(30)), StoppedError)
    pacer.resume()
    assert _raised(lambda: pacer.sleep(0.0)) is None


def test_a_stop_ends_a_rate_limit_pause_at_once() -> None:
    """A worker held by the gate's pause raises StoppedError when the gate is interrupted."""
    gate = RetryGate()
    gate.pause_for(100.0)
    outcome: list[BaseException | None] = []
    waiting = threading.Thread(target=lambda: outcome.append(_raised(gate.wait)))
    waiting.start()
    _until(lambda: waiting.is_alive())
    gate.interrupt()
    waiting.join(DEADLINE)
    assert not waiting.is_alive() and isinstance(outcome[0], StoppedError)


def _raised(call: object) -> BaseException | None:
    try:
        call()  # type: ignore[operator]
    except BaseException as exc:
        return exc
    return None


def _until(condition: object) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
