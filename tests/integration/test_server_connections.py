"""Stalled clients against `syncd serve`: header, body and send timeouts and the connection
limit, over raw sockets on loopback (the server runs with short timeouts)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from apispec import validate
from serverproc import ServerProcess

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 3.0
IDLE_TIMEOUT = 1.0
MAX_CONNECTIONS = 8
SLACK = 3.0


@pytest.fixture
def strict(server_factory: Any) -> ServerProcess:
    """A server with short timeouts and a small connection limit."""
    server: ServerProcess = server_factory(
        extra_args=[
            *("--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)),
            *("--idle-timeout", str(IDLE_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS)),
        ]
    )
    return server


def connect(server: ServerProcess, **options: int) -> socket.socket:
    host, port = server.root_url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    for option, value in options.items():
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, option), value)
    sock.connect((host, int(port)))
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def error_answer(data: bytes, status: int) -> dict[str, Any]:
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), data[:200]
    assert b"content-type: application/json" in head.lower()
    parsed = json.loads(body)
    validate("ErrorResponse", parsed)
    error: dict[str, Any] = parsed["error"]
    return error


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def list_ok(server: ServerProcess) -> bool:
    with httpx.Client(timeout=5) as http:
        return http.get(f"{server.base_url}/files", headers=server.headers()).status_code == 200


def test_a_silent_connection_is_closed_after_the_header_timeout(strict: ServerProcess) -> None:
    """A connection that sends nothing is closed quietly once the header timeout passes."""
    with connect(strict) as sock:
        data, took = read_until_closed(sock, HEADER_TIMEOUT + SLACK)
    assert data == b""
    assert HEADER_TIMEOUT * 0.8 <= took < HEADER_TIMEOUT + SLACK


def test_a_stalled_request_head_gets_a_408(strict: ServerProcess) -> None:
    """Half a request head, then nothing: a 408 in the envelope, then the connection closes."""
    with connect(strict) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthor")
        data, took = read_until_closed(sock, HEADER_TIMEOUT + SLACK)
    assert "request head" in error_answer(data, 408)["message"]
    assert took < HEADER_TIMEOUT + SLACK


def test_a_stalled_body_gets_a_408_and_leaves_nothing(strict: ServerProcess) -> None:
    """A body that stops mid-file: 408 after the idle timeout, no temp file, no descriptor."""
    with httpx.Client() as http:
        http.get(f"{strict.base_url}/files", headers=strict.headers())
    baseline = strict.open_fds()
    body = (
        b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="s.bin"\r\n\r\n'
    ) + b"x" * 3_000_000  # more than one batch: the file is being written
    head = (
        "POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {len(body) + 1_000_000}\r\n\r\n"
    ).encode()
    with connect(strict) as sock:
        sock.sendall(head + body)
        wait_until(lambda: bool(list((strict.data_dir / "tmp").iterdir())), "upload began")
        data, took = read_until_closed(sock, IDLE_TIMEOUT + SLACK)
    assert "no part of the request body arrived" in error_answer(data, 408)["message"]
    assert took < IDLE_TIMEOUT + SLACK
    assert list((strict.data_dir / "tmp").iterdir()) == []
    wait_until(lambda: strict.open_fds() <= baseline, "a descriptor outlived its request")
    assert strict.stats()["requests"][-1]["status"] == 408


def trickle(sock: socket.socket, every: float, until: float) -> Iterator[None]:
    while time.monotonic() < until:
        try:
            sock.sendall(b"x")
        except (BrokenPipeError, ConnectionResetError):
            return
        yield
        time.sleep(every)


def test_a_trickled_body_meets_the_overall_deadline(strict: ServerProcess) -> None:
    """One byte every 0.3 s never trips the idle timeout, but the body deadline ends it."""
    head = (
        b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    with connect(strict) as sock:
        sock.sendall(head + b'{"filename": "')
        started = time.monotonic()
        sock.setblocking(False)
        answer = b""
        for _ in trickle(sock, 0.3, started + BODY_TIMEOUT + SLACK):
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                continue
            if b"\r\n\r\n" in answer:
                break
        took = time.monotonic() - started
        sock.setblocking(True)
        data, _ = read_until_closed(sock, SLACK)
    assert "took longer than 3 s" in error_answer(answer + data, 408)["message"]
    assert BODY_TIMEOUT * 0.8 <= took < BODY_TIMEOUT + SLACK


def test_a_client_that_stops_reading_a_download_is_dropped(strict: ServerProcess) -> None:
    """A client that reads nothing of a 32 MiB download loses the connection after the idle
    timeout; the server lets go of the file's descriptor."""
    response = httpx.post(
        f"{strict.base_url}/files",
        headers=strict.headers(),
        data={"purpose": "vision"},
        files={"file": ("big.bin", b"z" * (32 * 1024 * 1024))},
        timeout=60,
    )
    file_id = response.json()["id"]
    baseline = strict.open_fds()
    with connect(strict, SO_RCVBUF=4096) as sock:
        sock.sendall(
            f"GET /v1/files/{file_id}/content HTTP/1.1\r\nHost: x\r\n"
            "Authorization: Bearer k\r\n\r\n".encode()
        )
        wait_until(lambda: strict.open_fds() > baseline, "the download began")
        started = time.monotonic()
        wait_until(lambda: strict.open_fds() <= baseline, "the stalled reader was kept", 15)
        took = time.monotonic() - started
        received, _ = read_until_closed(sock, SLACK)
    assert IDLE_TIMEOUT * 0.5 <= took < IDLE_TIMEOUT + SLACK
    assert len(received) < 32 * 1024 * 1024  # cut short, not delivered


def test_stalled_clients_do_not_starve_real_ones(strict: ServerProcess) -> None:
    """Stalled connections below the limit leave real clients served; at the limit a new
    connection gets a 503 at once; once the header timeout frees the slots, all is well."""
    stalled = [connect(strict) for _ in range(MAX_CONNECTIONS - 2)]
    try:
        started = time.monotonic()
        assert list_ok(strict)
        assert time.monotonic() - started < HEADER_TIMEOUT / 2
        stalled += [connect(strict) for _ in range(2)]
        with connect(strict) as extra:
            data, took = read_until_closed(extra, SLACK)
        error = error_answer(data, 503)
        assert error["code"] == "too_many_connections" and took < 1
        assert b"retry-after: 1" in data
        wait_until(lambda: list_ok(strict), "real clients starved", HEADER_TIMEOUT + SLACK)
    finally:
        for sock in stalled:
            sock.close()


def test_keep_alive_connections_survive_pauses_shorter_than_keep_alive(
    strict: ServerProcess,
) -> None:
    """A pooled connection idle for longer than the header timeout is still usable."""
    with httpx.Client(timeout=5) as http:
        for _ in range(3):
            assert http.get(f"{strict.base_url}/files", headers=strict.headers()).is_success
            time.sleep(HEADER_TIMEOUT * 1.5)
    assert strict.stats()["total"] == 3
