"""Pure parts of `syncd serve`'s limits: rate specs, the token bucket, durations, JSON
depth, form boundaries, bounded statistics, the body deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from syncd.errors import ConfigError
from syncd.server.envelope import ApiError
from syncd.server.form import _BOUNDARY
from syncd.server.gate import (
    MAX_PATH_CHARS,
    ROUTE_NAMES,
    BodyDeadline,
    BodyTimeouts,
    RequestStats,
)
from syncd.server.jsonbody import MAX_JSON_DEPTH, parse_json
from syncd.server.ratelimit import (
    RateLimiter,
    RequestRate,
    TokenBucket,
    format_duration,
    parse_rate_limits,
    retry_after_headers,
)


def test_rate_specs_parse_with_route_unit_and_burst() -> None:
    """600/min is create's; ROUTE= names another route; :B sets the burst."""
    limits = parse_rate_limits(["600/min", "list=100/s", "content=5/h:2"], ROUTE_NAMES)
    assert limits["create"] == RequestRate(count=600, period=60.0, unit="min", burst=600)
    assert limits["list"] == RequestRate(count=100, period=1.0, unit="s", burst=100)
    assert limits["content"] == RequestRate(count=5, period=3600.0, unit="h", burst=2)
    assert str(limits["content"]) == "5/h:2"


@pytest.mark.parametrize(
    "spec", ["", "600", "600/week", "x=1/s", "0/s", "1/s:0", "-1/s", "1.5/s", "1/s:", "create="]
)
def test_bad_rate_specs_name_the_option(spec: str) -> None:
    """Anything else is a ConfigError that starts with --rate-limit."""
    with pytest.raises(ConfigError, match=r"^--rate-limit "):
        parse_rate_limits([spec], ROUTE_NAMES)


def test_a_route_limited_twice_is_refused() -> None:
    """Two specs for one route (600/min means create) are a ConfigError."""
    with pytest.raises(ConfigError, match="twice"):
        parse_rate_limits(["600/min", "create=10/s"], ROUTE_NAMES)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0004, "1ms"),
        (0.006, "6ms"),
        (0.02, "20ms"),
        (0.999, "999ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (17.28, "17.28s"),
        (59.9991, "1m0s"),
        (360, "6m0s"),
        (3723.5, "1h2m3.5s"),
    ],
)
def test_durations_print_like_go(seconds: float, text: str) -> None:
    """Reset durations look like OpenAI's (Go's time.Duration), rounded up to the ms."""
    assert format_duration(seconds) == text


def test_bucket_allows_a_burst_then_refills_continuously() -> None:
    """A full bucket of 3 (per 60 s) admits 3, refuses the 4th, admits again 20 s later."""
    rate = RequestRate(count=3, period=60.0, unit="min", burst=3)
    bucket = TokenBucket(rate, now=0.0)
    verdicts = [bucket.take(now=0.0) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert verdicts[0].reset_s == pytest.approx(20.0)
    assert verdicts[3].retry_after_s == pytest.approx(20.0) and verdicts[3].reset_s == 60.0
    assert not bucket.take(now=19.9).allowed
    later = bucket.take(now=20.0)
    assert later.allowed and later.remaining == 0
    assert bucket.take(now=1000.0).remaining == 2  # never more than the burst


def test_limiter_knows_only_its_routes_and_headers_are_openais() -> None:
    """Unlimited routes get no verdict; a verdict's headers are the three x-ratelimit ones."""
    clock = [0.0]
    limiter = RateLimiter(parse_rate_limits(["2/s"], ROUTE_NAMES), clock=lambda: clock[0])
    assert limiter.take("list") is None
    verdict = limiter.take("create")
    assert verdict is not None
    assert verdict.headers() == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "500ms",
    }
    assert retry_after_headers(0.0004) == {"retry-after-ms": "1", "retry-after": "1"}
    assert retry_after_headers(2.5) == {"retry-after-ms": "2500", "retry-after": "3"}


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' * 5000 + b"1" + b"}" * 5000,
    ],
)
def test_json_nested_too_deeply_is_a_400(raw: bytes) -> None:
    """Nesting beyond the cap, even far beyond the recursion limit, is a 400 ApiError."""
    with pytest.raises(ApiError) as caught:
        parse_json(raw)
    assert caught.value.status == 400 and "nested" in caught.value.message


def test_json_within_the_cap_and_odd_json_are_handled() -> None:
    """Depth up to the cap parses; bad UTF-8 and a 5,000-digit integer are 400s."""
    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    for raw in (b'{"a": "\xff"}', b'{"bytes": ' + b"9" * 5000 + b"}"):
        with pytest.raises(ApiError) as caught:
            parse_json(raw)
        assert caught.value.status == 400


@pytest.mark.parametrize(
    ("boundary", "ok"),
    [
        (b"abc", True),
        (b"----WebKitFormBoundary7MA4YWxkTrZu0gW", True),
        (b"a" * 70, True),
        (b"a" * 71, False),
        (b"", False),
        (b"ends with space ", False),
        (b"bad\x00char", False),
        (b"semi;colon", False),
    ],
)
def test_boundaries_follow_rfc_2046(boundary: bytes, ok: bool) -> None:
    """1-70 bchars, not ending in a space."""
    assert bool(_BOUNDARY.fullmatch(boundary)) is ok


def test_stats_are_bounded_in_records_and_path_length() -> None:
    """The statistics keep the last max_records requests, paths cut to MAX_PATH_CHARS."""
    stats = RequestStats(max_records=3)
    for i in range(5):
        stats.finish(stats.begin("GET", f"/v1/files/{i}" + "x" * 10_000, "retrieve"))
    data = stats.to_json()
    assert len(data["requests"]) == 3 and data["total"] == 5
    assert all(len(r["path"]) == MAX_PATH_CHARS for r in data["requests"])
    assert data["requests"][0]["path"].startswith("/v1/files/2")


def _body(chunks: list[tuple[float, bytes, bool]]) -> Any:
    """A receive() that sleeps before each chunk; then waits forever."""

    async def receive() -> dict[str, Any]:
        if not chunks:
            await asyncio.sleep(3600)
        delay, data, more = chunks.pop(0)
        await asyncio.sleep(delay)
        return {"type": "http.request", "body": data, "more_body": more}

    return receive


def test_body_deadline_catches_silence_and_slow_trickles() -> None:
    """Silence over `idle` and a body over `total` are 408s; a finished body passes."""

    async def drain(deadline: BodyDeadline) -> int:
        got = 0
        while True:
            message = await deadline()
            got += len(message["body"])
            if not message["more_body"]:
                return got

    timeouts = BodyTimeouts(total=0.3, idle=0.1)
    silent = BodyDeadline(_body([(0, b"a", True), (1.0, b"b", False)]), timeouts)
    with pytest.raises(ApiError, match=r"no part of the request body arrived for 0\.1 s"):
        asyncio.run(drain(silent))
    trickle = BodyDeadline(_body([(0.05, b"a", True)] * 20), timeouts)
    with pytest.raises(ApiError, match=r"took longer than 0\.3 s") as caught:
        asyncio.run(drain(trickle))
    assert caught.value.status == 408 and caught.value.headers["connection"] == "close"
    whole = BodyDeadline(_body([(0.01, b"ab", True), (0.01, b"c", False)]), timeouts)
    assert asyncio.run(drain(whole)) == 3
