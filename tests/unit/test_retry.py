"""The retry policy: Retry-After parsing, backoff with full jitter, the shared gate, tenacity."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from structlog.testing import capture_logs

from syncd.errors import (
    AmbiguousError,
    FatalError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    error_for_status,
)
from syncd.remote.retry import (
    RETRY_AFTER_CEILING,
    RetryGate,
    RetryPolicy,
    full_jitter_backoff,
    is_retried,
    parse_retry_after,
)

NOW = 1_700_000_000.0


# -- parse_retry_after ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "4"}, 4.0),
        ({"retry-after-ms": "-5", "retry-after": "4"}, 4.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "tomorrow-ish"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": ""}, None),
        ({}, None),
        ({"retry-after": "999999999"}, RETRY_AFTER_CEILING),
    ],
)
def test_parse_retry_after_values(headers: dict[str, str], expected: float | None) -> None:
    """retry-after-ms wins, seconds parse, garbage/negative give None, huge values cap."""
    assert parse_retry_after(headers, now=NOW) == expected


def test_parse_retry_after_http_date() -> None:
    """An HTTP date means the seconds from now until then; a past date means nothing."""
    future = format_datetime(datetime.fromtimestamp(NOW + 30, tz=UTC), usegmt=True)
    past = format_datetime(datetime.fromtimestamp(NOW - 30, tz=UTC), usegmt=True)
    assert parse_retry_after({"retry-after": future}, now=NOW) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": past}, now=NOW) is None


# -- backoff ------------------------------------------------------------------------------


def test_full_jitter_backoff_stays_within_the_exponential_bound() -> None:
    """Each wait is in [0, min(cap, base * 2**n)] and uses the whole window (full jitter)."""
    rng = random.Random(1)
    for n in range(8):
        bound = min(8.0, 0.5 * 2**n)
        waits = [full_jitter_backoff(n, 0.5, 8.0, rng) for _ in range(400)]
        assert all(0.0 <= w <= bound for w in waits)
        assert min(waits) < bound * 0.1  # reaches near zero: not "bound minus a little"
        assert max(waits) > bound * 0.9


def test_wait_is_at_least_the_retry_after() -> None:
    """The policy never waits less than the server's Retry-After, jitter or not."""
    policy = RetryPolicy(rng=random.Random(2))
    assert all(policy.wait_seconds(0, 3.0) >= 3.0 for _ in range(100))
    assert all(policy.wait_seconds(2, None) <= 2.0 for _ in range(100))


# -- verdicts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (RetryableError("reset"), True),
        (RateLimitedError("slow down", status=429), True),
        (error_for_status(503, "busy"), True),
        (error_for_status(408, "timeout"), True),
        (error_for_status(409, "conflict"), True),
        (AmbiguousError("answer lost"), False),
        (PermanentError("bad purpose", status=400), False),
        (NotFoundError("gone", status=404), False),
        (FatalError("bad key", status=401), False),
        (error_for_status(403, "no rights"), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_retryable_and_unambiguous_errors_are_retried(
    error: BaseException, retried: bool
) -> None:
    """tenacity's predicate: retryable yes; ambiguous, permanent, fatal and bugs no."""
    assert is_retried(error) is retried


# -- tenacity Retrying --------------------------------------------------------------------


class Script:
    """A call that raises the given errors in turn, then returns "ok"; counts calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def quiet_policy(**kwargs: object) -> tuple[RetryPolicy, list[float]]:
    slept: list[float] = []
    policy = RetryPolicy(rng=random.Random(3), sleep=slept.append, **kwargs)  # type: ignore[arg-type]
    return policy, slept


def test_retrying_retries_retryable_errors_then_succeeds() -> None:
    """Two retryable failures, then success: three calls, two sleeps, result returned."""
    policy, slept = quiet_policy()
    call = Script(RetryableError("reset"), error_for_status(502, "bad gateway"))
    assert policy.retrying("op")(call) == "ok"
    assert call.calls == 3
    assert len(slept) == 2


def test_retrying_gives_up_after_max_attempts_with_the_last_error() -> None:
    """max_attempts counts the first try; the last error is re-raised as itself."""
    policy, slept = quiet_policy(max_attempts=3)
    last = RetryableError("third")
    call = Script(RetryableError("first"), RetryableError("second"), last, RetryableError("x"))
    with pytest.raises(RetryableError) as info:
        policy.retrying("op")(call)
    assert info.value is last
    assert call.calls == 3
    assert len(slept) == 2


@pytest.mark.parametrize(
    "error",
    [AmbiguousError("lost"), PermanentError("bad", status=400), FatalError("key", status=401)],
)
def test_retrying_does_not_retry_other_verdicts(error: Exception) -> None:
    """Ambiguous, permanent and fatal errors go straight to the caller: one call, no sleep."""
    policy, slept = quiet_policy()
    call = Script(error)
    with pytest.raises(type(error)):
        policy.retrying("op")(call)
    assert call.calls == 1
    assert slept == []


def test_retrying_waits_the_retry_after_and_logs_each_retry() -> None:
    """A 429 with Retry-After 2 s waits at least 2 s; the log names attempt, status, wait."""
    policy, slept = quiet_policy()
    call = Script(RateLimitedError("slow down", status=429, retry_after=2.0))
    with capture_logs() as logs:
        assert policy.retrying("upload a.txt")(call) == "ok"
    assert slept[0] >= 2.0
    retries = [entry for entry in logs if entry["event"] == "remote_retry"]
    assert len(retries) == 1
    assert retries[0]["attempt"] == 1
    assert retries[0]["status"] == 429
    assert retries[0]["wait"] >= 2.0
    assert retries[0]["action"] == "upload a.txt"


def test_retrying_does_not_wait_out_a_retry_after_beyond_the_limit() -> None:
    """A Retry-After above max_retry_after is not waited for here: it goes to the caller."""
    policy, slept = quiet_policy(max_retry_after=120.0)
    call = Script(RateLimitedError("quota", status=429, retry_after=600.0))
    with pytest.raises(RateLimitedError) as info:
        policy.retrying("op")(call)
    assert info.value.retry_after == 600.0
    assert call.calls == 1
    assert slept == []


# -- RetryGate ----------------------------------------------------------------------------


def waiters(
    gate: RetryGate, count: int
) -> tuple[list[threading.Thread], list[float], threading.Event]:
    """``count`` threads that call gate.wait() once all have started; record when they pass."""
    passed: list[float] = []
    lock = threading.Lock()
    started = threading.Barrier(count + 1)
    errors = threading.Event()

    def run() -> None:
        started.wait()
        try:
            gate.wait()
        except Exception:
            errors.set()
            return
        with lock:
            passed.append(time.monotonic())

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    started.wait()
    return threads, passed, errors


def test_gate_is_open_when_no_pause_is_in_force() -> None:
    """A fresh gate lets requests through at once."""
    gate = RetryGate()
    gate.wait()
    assert gate.remaining() == 0.0


def test_gate_holds_every_thread_until_the_pause_ends() -> None:
    """A pause set by one worker blocks all eight waiters until it runs out, then frees them."""
    gate = RetryGate()
    gate.pause_for(0.3)
    deadline = time.monotonic() + 0.3
    threads, passed, errors = waiters(gate, 8)
    for thread in threads:
        thread.join(timeout=10)
    assert not errors.is_set()
    assert len(passed) == 8
    assert min(passed) >= deadline - 0.01  # nobody went before the pause was over


def test_gate_pause_extends_but_never_shortens() -> None:
    """A longer pause moves the deadline on for threads already waiting; a shorter one does not."""
    gate = RetryGate()
    gate.pause_for(0.2)
    threads, passed, _ = waiters(gate, 4)
    gate.pause_for(0.5)
    extended = time.monotonic() + 0.5
    gate.pause_for(0.05)
    assert gate.remaining() > 0.3
    for thread in threads:
        thread.join(timeout=10)
    assert len(passed) == 4
    assert min(passed) >= extended - 0.01


def test_gate_refuses_to_block_for_a_pause_beyond_max_block() -> None:
    """A pause longer than max_block makes wait() raise RateLimitedError with the time left."""
    gate = RetryGate(max_block=120.0)
    gate.pause_for(3600.0)
    with pytest.raises(RateLimitedError) as info:
        gate.wait()
    assert info.value.retry_after is not None
    assert 3500.0 < info.value.retry_after <= 3600.0


def test_gate_uses_its_clock() -> None:
    """The pause is measured on the gate's clock: it is over once that clock passes it."""
    now = [100.0]
    gate = RetryGate(clock=lambda: now[0])
    gate.pause_for(5.0)
    assert gate.remaining() == 5.0
    now[0] = 105.5
    assert gate.remaining() == 0.0
    gate.wait()
