"""`syncd serve --rate-limit`: a token bucket per route, answered like OpenAI's limiter."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from apispec import validate
from serverproc import ServerProcess, clean_env

from syncd.server.embedded import EmbeddedServer

RESET = re.compile(r"(?:\d+h)?(?:\d+m)?\d+(?:\.\d+)?s|\d+ms")


def post_file(server: ServerProcess, http: httpx.Client, name: str = "f.txt") -> httpx.Response:
    return http.post(
        f"{server.base_url}/files",
        headers=server.headers(),
        data={"purpose": "user_data"},
        files={"file": (name, b"x")},
    )


def list_files(server: ServerProcess, http: httpx.Client) -> httpx.Response:
    return http.get(f"{server.base_url}/files", headers=server.headers(), params={"limit": 1})


def remaining(response: httpx.Response) -> int:
    return int(response.headers["x-ratelimit-remaining-requests"])


def test_requests_beyond_the_bucket_get_a_429_with_envelope_and_headers(
    server_factory: Any,
) -> None:
    """--rate-limit 3/min: three creates pass with headers counting 2, 1, 0; the fourth is
    OpenAI's 429 (type requests, rate_limit_exceeded, retry-after) and stores nothing."""
    server = server_factory(extra_args=["--rate-limit", "3/min"])
    with httpx.Client(timeout=30) as http:
        allowed = [post_file(server, http, f"{i}.txt") for i in range(3)]
        refused = post_file(server, http, "late.txt")
        unlimited = list_files(server, http)
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert [remaining(r) for r in allowed] == [2, 1, 0]
    assert all(r.headers["x-ratelimit-limit-requests"] == "3" for r in allowed)
    assert all(RESET.fullmatch(r.headers["x-ratelimit-reset-requests"]) for r in allowed)
    assert allowed[0].headers["x-ratelimit-reset-requests"] == "20s"  # 1 token back: 20 s
    assert refused.status_code == 429
    body = refused.json()
    validate("ErrorResponse", body)
    error = body["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "requests",
        "rate_limit_exceeded",
        None,
    )
    assert error["message"].startswith("Rate limit reached for requests")
    assert "Limit: 3 / min. Please try again in " in error["message"]
    assert remaining(refused) == 0 and refused.headers["x-ratelimit-limit-requests"] == "3"
    assert 19_000 <= int(refused.headers["retry-after-ms"]) <= 20_000  # one token: 20 s
    assert refused.headers["retry-after"] == "20"
    assert len(server.blob_paths()) == 3
    assert unlimited.status_code == 200 and "x-ratelimit-limit-requests" not in unlimited.headers


def test_headers_count_down_and_the_bucket_refills_at_its_rate(server_factory: Any) -> None:
    """list=20/s: remaining never rises while draining, the first request after a 429 passes
    when retry-after-ms said, and about 20 pass per second of steady asking."""
    server = server_factory(extra_args=["--rate-limit", "list=20/s"])
    with httpx.Client(timeout=30) as http:
        seen: list[int] = []
        answered: list[float] = []
        while (response := list_files(server, http)).status_code == 200:
            seen.append(remaining(response))
            answered.append(time.monotonic())
            assert len(seen) < 200, "the bucket never ran dry"
        assert seen[0] == 19 and seen[-1] == 0
        # Remaining rises only by what the bucket refilled between two answers (20/s: one
        # token per 50 ms; on a loaded machine a request can take longer than that).
        for i in range(1, len(seen)):
            refilled = math.ceil((answered[i] - answered[i - 1]) * 20)
            assert seen[i] - seen[i - 1] <= refilled, (i, seen)
        wait = int(response.headers["retry-after-ms"]) / 1000
        assert 0 < wait <= 0.05
        refused_at = time.monotonic()
        while list_files(server, http).status_code == 429:
            assert time.monotonic() - refused_at < 2, "the bucket did not refill"
        assert time.monotonic() - refused_at >= wait * 0.5
        admitted, start = 0, time.monotonic()
        while time.monotonic() - start < 1.0:
            admitted += list_files(server, http).status_code == 200
    assert 15 <= admitted <= 25, admitted


def test_routes_have_their_own_buckets_and_a_burst(server_factory: Any) -> None:
    """create=2/min and list=60/min:3 limit two routes apart; the burst caps list at 3."""
    server = server_factory(
        extra_args=["--rate-limit", "create=2/min", "--rate-limit", "list=60/min:3"]
    )
    with httpx.Client(timeout=30) as http:
        lists = [list_files(server, http) for _ in range(4)]
        creates = [post_file(server, http, f"{i}.txt").status_code for i in range(3)]
    assert [r.status_code for r in lists] == [200, 200, 200, 429]
    assert lists[0].headers["x-ratelimit-limit-requests"] == "60"
    assert [remaining(r) for r in lists[:3]] == [2, 1, 0]
    assert lists[0].headers["x-ratelimit-reset-requests"] == "1s"
    assert creates == [200, 200, 429]


def test_unauthenticated_requests_take_no_token(server_factory: Any) -> None:
    """A request without a key is a 401 without rate-limit headers and costs nothing."""
    server = server_factory(api_key="sk-limit", extra_args=["--rate-limit", "list=2/min"])
    with httpx.Client(timeout=30) as http:
        for _ in range(5):
            refused = http.get(f"{server.base_url}/files")
            assert refused.status_code == 401
            assert "x-ratelimit-remaining-requests" not in refused.headers
        assert [remaining(list_files(server, http)) for _ in range(2)] == [1, 0]


def test_the_sdk_waits_as_retry_after_says_and_succeeds(server_factory: Any) -> None:
    """create=1/s: the SDK's second create meets a 429, waits ~1 s, and is stored."""
    server = server_factory(extra_args=["--rate-limit", "create=1/s"])
    client = openai.OpenAI(base_url=server.base_url, api_key=server.client_key, max_retries=2)
    client.files.create(file=("a.txt", b"a"), purpose="user_data")
    started = time.monotonic()
    client.files.create(file=("b.txt", b"b"), purpose="user_data")
    assert time.monotonic() - started >= 0.5
    statuses = [r["status"] for r in server.stats()["requests"]]
    assert statuses[:2] == [200, 429] and statuses[-1] == 200
    assert len(server.blob_paths()) == 2


def test_embedded_server_takes_rate_limits(tmp_path: Path) -> None:
    """EmbeddedServer(rate_limits=["2/min"]) limits POST /files like the command."""
    with EmbeddedServer(tmp_path / "s", rate_limits=["2/min"]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        for name in ("a.txt", "b.txt"):
            client.files.create(file=(name, b"x"), purpose="user_data")
        with pytest.raises(openai.RateLimitError) as caught:
            client.files.create(file=("c.txt", b"x"), purpose="user_data")
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize(
    "values",
    [
        ["600"],
        ["10/week"],
        ["nope=5/s"],
        ["0/min"],
        ["list=1/s:0"],
        ["create=1/s", "2/s"],
    ],
)
def test_unparsable_rate_limits_are_usage_errors(tmp_path: Path, values: list[str]) -> None:
    """A --rate-limit that does not parse (or names a route twice) exits 2 naming the option."""
    args = [arg for value in values for arg in ("--rate-limit", value)]
    result = subprocess.run(
        [sys.executable, "-m", "syncd", "serve", "--port", "0", "--data", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("syncd: --rate-limit ")
    assert "Traceback" not in result.stderr
