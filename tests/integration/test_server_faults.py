"""Fault injection and request statistics of `syncd serve`, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
from apispec import validate
from serverproc import ServerProcess


def post_file(server: ServerProcess, name: str = "f.txt") -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/files",
        headers=server.headers(),
        data={"purpose": "user_data"},
        files={"file": (name, b"content of " + name.encode())},
    )


def list_files(server: ServerProcess) -> httpx.Response:
    return httpx.get(f"{server.base_url}/files", headers=server.headers())


def stored_names(server: ServerProcess) -> list[str]:
    server.set_faults(None)
    return sorted(f["filename"] for f in list_files(server).json()["data"])


def test_error_rate_one_fails_everything_with_retry_after(server_factory: Any) -> None:
    """error_rate 1 answers every request with a chosen status, Retry-After, stores nothing."""
    server = server_factory(faults={"error_rate": 1.0, "error_statuses": [503], "retry_after": 2.5})
    response = post_file(server)
    assert response.status_code == 503
    validate("ErrorResponse", response.json())
    assert response.headers["retry-after"] == "3"
    assert response.headers["retry-after-ms"] == "2500"
    assert list_files(server).status_code == 503
    assert stored_names(server) == []
    faulted = [r for r in server.stats()["requests"] if r["fault"] == "error"]
    assert [(r["route"], r["status"]) for r in faulted] == [("create", 503), ("list", 503)]


def test_seeded_error_rate_mixes_failures_and_successes(server: ServerProcess) -> None:
    """error_rate 0.5 with a seed fails some requests and lets the others through intact."""
    server.set_faults({"seed": 42, "error_rate": 0.5, "error_statuses": [500, 502]})
    statuses = [post_file(server, f"{i}.txt").status_code for i in range(40)]
    assert set(statuses) == {200, 500, 502}
    assert len(stored_names(server)) == statuses.count(200)


def test_rate_limit_answers_429_with_retry_after(server: ServerProcess) -> None:
    """Beyond `requests` per window the server answers 429 + Retry-After, counted in stats."""
    server.set_faults({"rate_limit": {"requests": 3, "per_seconds": 60, "retry_after": 7}})
    statuses = [list_files(server).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = list_files(server)
    error = limited.json()["error"]
    validate("ErrorResponse", limited.json())
    assert error["code"] == "rate_limit_exceeded"
    assert limited.headers["retry-after"] == "7"
    stats = server.stats()
    assert stats["counts"]["list"] == 6
    assert sum(r["fault"] == "rate_limit" for r in stats["requests"]) == 3


def test_rate_limit_without_fixed_wait_says_when_the_window_frees(server: ServerProcess) -> None:
    """Without a configured retry_after, Retry-After is the time until the window has room."""
    server.set_faults({"rate_limit": {"requests": 1, "per_seconds": 30}})
    assert list_files(server).status_code == 200
    limited = list_files(server)
    assert limited.status_code == 429
    assert 0 < int(limited.headers["retry-after-ms"]) <= 30_000


def test_lost_answer_stores_the_file_but_answers_502(server: ServerProcess) -> None:
    """lost_answer_rate 1: POST /files stores the file, yet the client gets a 502."""
    server.set_faults({"lost_answer_rate": 1.0})
    response = post_file(server, "kept.txt")
    assert response.status_code == 502
    validate("ErrorResponse", response.json())
    assert list_files(server).status_code == 200  # reads never lose their answer
    assert stored_names(server) == ["kept.txt"]
    assert [r["fault"] for r in server.stats()["requests"] if r["route"] == "create"] == [
        "lost_answer"
    ]


def test_latency_is_added_before_handling(server: ServerProcess) -> None:
    """latency_ms delays every matching request by at least that much."""
    server.set_faults({"latency_ms": 150})
    assert list_files(server).status_code == 200
    (record,) = server.stats()["requests"]
    assert record["finished"] - record["started"] >= 0.15


def test_filters_limit_faults_to_chosen_routes_and_methods(server: ServerProcess) -> None:
    """With routes/methods filters only matching requests are faulted."""
    server.set_faults({"error_rate": 1.0, "routes": ["create"]})
    assert post_file(server).status_code == 500
    assert list_files(server).status_code == 200
    server.set_faults({"error_rate": 1.0, "methods": ["get"]})
    assert post_file(server).status_code == 200
    assert list_files(server).status_code == 500


def test_fault_config_is_read_replaced_and_validated(server: ServerProcess) -> None:
    """GET/PUT /_syncd/faults show and replace the config; a bad one is a 400, kept out."""
    assert server.get_faults()["error_rate"] == 0.0
    shown = server.set_faults({"error_rate": 0.25, "latency_ms": 5})
    assert shown["error_rate"] == 0.25 and server.get_faults()["latency_ms"] == 5
    bad = httpx.put(
        f"{server.root_url}/_syncd/faults", headers=server.headers(), json={"error_rate": 2}
    )
    assert bad.status_code == 400
    assert "error_rate" in bad.json()["error"]["message"]
    assert server.get_faults()["error_rate"] == 0.25


def test_stats_record_authenticated_requests_and_count_refused_keys(
    server: ServerProcess,
) -> None:
    """Stats list each authenticated request with status and times; a 401 is only counted
    (strangers cannot fill the records); reset empties both."""
    assert httpx.get(f"{server.base_url}/files").status_code == 401
    assert post_file(server).status_code == 200
    assert list_files(server).status_code == 200
    stats = server.stats()
    assert [(r["method"], r["route"], r["status"]) for r in stats["requests"]] == [
        ("POST", "create", 200),
        ("GET", "list", 200),
    ]
    assert all(r["started"] <= r["finished"] for r in stats["requests"])
    assert stats["counts"] == {"list": 1, "create": 1}
    assert stats["unauthenticated"] == 1
    server.reset_stats()
    assert server.stats()["requests"] == [] and server.stats()["unauthenticated"] == 0


def test_admin_endpoints_need_the_key(server_factory: Any) -> None:
    """With --api-key, /_syncd/* refuses other keys and is never counted in the stats."""
    server = server_factory(api_key="sk-admin-test")
    refused = httpx.get(f"{server.root_url}/_syncd/stats", headers={"Authorization": "Bearer x"})
    assert refused.status_code == 401
    assert server.stats()["total"] == 0
