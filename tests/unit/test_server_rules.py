"""Pure parts of `syncd serve`: fault config and decisions, JSON Lines checks, routes, keys."""

from __future__ import annotations

import re

import pytest

from syncd.errors import ConfigError
from syncd.server.faults import FaultConfig, FaultInjector, load_faults, parse_faults
from syncd.server.form import JsonlChecker
from syncd.server.gate import check_key, route_name


def checked(*chunks: bytes) -> str | None:
    checker = JsonlChecker()
    for chunk in chunks:
        checker.feed(chunk)
    return checker.finish()


def test_jsonl_lines_split_across_chunks_are_joined() -> None:
    """A JSON line cut anywhere between chunks is still checked as one line."""
    assert checked(b'{"a": ', b'1}\n{"b"', b": 2}\n") is None
    assert (checked(b'{"a": ', b"1\n") or "").startswith("line 1 is not valid JSON")


def test_jsonl_first_fault_wins_and_is_numbered() -> None:
    """The first bad line is reported by its 1-based number; later ones do not replace it."""
    assert (checked(b"1\n2\n{x\n[\n") or "").startswith("line 3 ")
    assert checked(b"") == "the file is empty"
    assert checked(b"1\n\n") == "line 2 is empty"


def test_fault_config_round_trips_and_rejects_bad_keys() -> None:
    """A full config parses and prints back; unknown keys and bad values are ConfigErrors."""
    text = (
        '{"seed": 1, "error_rate": 0.5, "error_statuses": [502], "retry_after": 1,'
        ' "latency_ms": 3, "rate_limit": {"requests": 2, "per_seconds": 1},'
        ' "lost_answer_rate": 0.1, "methods": ["post"], "routes": ["create"]}'
    )
    config = load_faults(text)
    assert parse_faults(config.to_json()) == config
    assert config.methods == frozenset({"POST"})
    assert load_faults("") == FaultConfig()
    for bad in ('{"eror_rate": 1}', '{"error_statuses": [200]}', '{"seed": "x"}', "[1]"):
        with pytest.raises(ConfigError):
            load_faults(bad)


def test_rate_limit_window_slides() -> None:
    """N requests pass per window; the next waits until the oldest leaves the window."""
    injector = FaultInjector(parse_faults({"rate_limit": {"requests": 2, "per_seconds": 10}}))
    assert not injector.decide("GET", "list", now=100.0).rate_limited
    assert not injector.decide("GET", "list", now=101.0).rate_limited
    limited = injector.decide("GET", "list", now=102.0)
    assert limited.rate_limited and limited.retry_after == pytest.approx(8.0)
    assert not injector.decide("GET", "list", now=110.5).rate_limited


@pytest.mark.parametrize(
    ("indexing", "message"),
    [
        ({"failure_rate": 2}, "'failure_rate' must be a number"),
        ({"failure_code": "oops"}, "'indexing.failure_code' must be one of"),
        ({"fail_names": "x"}, "'indexing.fail_names' must be a list"),
        ({"stall": 1}, "unknown indexing key(s) stall"),
        ([], "'indexing' must be an object"),
    ],
)
def test_indexing_fault_config_is_checked(indexing: object, message: str) -> None:
    """A bad `indexing` fault configuration is one ConfigError naming the key."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_faults({"indexing": indexing})


def test_seeded_faults_repeat() -> None:
    """The same seed gives the same sequence of injected errors."""
    config = parse_faults({"seed": 3, "error_rate": 0.5, "error_statuses": [500, 503]})
    first, second = FaultInjector(config), FaultInjector(config)
    assert [first.decide("GET", "list").error_status for _ in range(30)] == [
        second.decide("GET", "list").error_status for _ in range(30)
    ]


def test_lost_answers_only_touch_posts() -> None:
    """lost_answer_rate applies to the POSTs (file create, uploads), never to reads/deletes."""
    injector = FaultInjector(parse_faults({"lost_answer_rate": 1.0}))
    assert injector.decide("POST", "create").lose_answer
    assert injector.decide("POST", "upload_complete").lose_answer
    assert not injector.decide("GET", "list").lose_answer
    assert not injector.decide("DELETE", "delete").lose_answer


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("POST", "/v1/files", "create"),
        ("GET", "/v1/files", "list"),
        ("GET", "/v1/files/file-1", "retrieve"),
        ("GET", "/v1/files/file-1/content", "content"),
        ("DELETE", "/v1/files/file-1", "delete"),
        ("POST", "/v1/uploads", "upload_create"),
        ("POST", "/v1/uploads/upload_1/parts", "upload_part"),
        ("POST", "/v1/uploads/upload_1/complete", "upload_complete"),
        ("POST", "/v1/uploads/upload_1/cancel", "upload_cancel"),
        ("PUT", "/v1/files", "other"),
        ("POST", "/v1/vector_stores", "vs_create"),
        ("GET", "/v1/vector_stores", "vs_list"),
        ("GET", "/v1/vector_stores/vs_1", "vs_retrieve"),
        ("DELETE", "/v1/vector_stores/vs_1", "vs_delete"),
        ("POST", "/v1/vector_stores/vs_1/files", "vs_file_create"),
        ("GET", "/v1/vector_stores/vs_1/files", "vs_file_list"),
        ("GET", "/v1/vector_stores/vs_1/files/file-1", "vs_file_retrieve"),
        ("POST", "/v1/vector_stores/vs_1/files/file-1", "vs_file_update"),
        ("DELETE", "/v1/vector_stores/vs_1/files/file-1", "vs_file_delete"),
        ("POST", "/v1/vector_stores/vs_1/file_batches", "vs_batch_create"),
        ("GET", "/v1/vector_stores/vs_1/file_batches/vsfb_1", "vs_batch_retrieve"),
        ("POST", "/v1/vector_stores/vs_1/file_batches/vsfb_1/cancel", "vs_batch_cancel"),
        ("GET", "/v1/vector_stores/vs_1/file_batches/vsfb_1/files", "vs_batch_files"),
    ],
)
def test_route_names(method: str, path: str, name: str) -> None:
    """Requests are counted under the API operation they are for."""
    assert route_name(method, path) == name


def scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
    return {"type": "http", "headers": list(headers)}


def test_key_check() -> None:
    """Bearer or api-key must match a configured key; without one any key but none passes."""
    assert check_key(scope((b"authorization", b"Bearer k1")), "k1") is None
    assert check_key(scope((b"api-key", b"k1")), "k1") is None
    wrong = check_key(scope((b"authorization", b"Bearer k2")), "k1")
    assert wrong is not None and wrong.status == 401 and wrong.code == "invalid_api_key"
    assert check_key(scope((b"authorization", b"Bearer anything")), None) is None
    missing = check_key(scope(), None)
    assert missing is not None and missing.status == 401
