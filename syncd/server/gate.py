"""Everything a request passes before a handler: statistics, authentication, faults.

``Gate`` is a plain ASGI middleware (no BaseHTTPMiddleware: it must not buffer bodies).
For every request outside ``/_syncd/`` it records ``{method, path, route, status,
started, finished, fault}`` in ``RequestStats``, including the ones it refuses; then it
checks the key, then applies the fault decision:

- rate limit / injected error: the body is read and dropped, then the error is sent
  (answering before the body is read makes clients see a reset, not the status);
- latency: a sleep before the handler runs;
- lost answer (POSTs only): the handler runs (the file is stored, the part added...) and
  its answer is replaced by a 502.

``/_syncd/*`` (statistics and fault control for tests) needs the same key as the API and
is never recorded nor faulted.

Every answer carries a ``Date`` header from the server's clock (``syncd.server.clock``,
which ``--clock-offset`` shifts); uvicorn's own, cached once a second from the host's
clock, is turned off.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncd.server import clock
from syncd.server.envelope import ApiError
from syncd.server.faults import NO_FAULT, FaultDecision, FaultInjector, retry_after_headers

ADMIN_PREFIX = "/_syncd/"
MAX_RECORDS = 200_000

_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"/v1/files/?"), "create"),
    ("GET", re.compile(r"/v1/files/?"), "list"),
    ("GET", re.compile(r"/v1/files/[^/]+/content"), "content"),
    ("GET", re.compile(r"/v1/files/[^/]+"), "retrieve"),
    ("DELETE", re.compile(r"/v1/files/[^/]+"), "delete"),
    ("POST", re.compile(r"/v1/uploads/?"), "upload_create"),
    ("POST", re.compile(r"/v1/uploads/[^/]+/parts"), "upload_part"),
    ("POST", re.compile(r"/v1/uploads/[^/]+/complete"), "upload_complete"),
    ("POST", re.compile(r"/v1/uploads/[^/]+/cancel"), "upload_cancel"),
)


def route_name(method: str, path: str) -> str:
    """The API operation a request is for (``create``, ``list``, ...), or ``other``."""
    for route_method, pattern, name in _ROUTES:
        if method == route_method and pattern.fullmatch(path):
            return name
    return "other"


@dataclass
class RequestRecord:
    method: str
    path: str
    route: str
    started: float
    finished: float | None = None
    status: int | None = None
    fault: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "fault": self.fault,
        }


class RequestStats:
    """Every request the server saw (the last ``MAX_RECORDS``), and counts per route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._records: deque[RequestRecord] = deque(maxlen=MAX_RECORDS)
            self._counts: Counter[str] = Counter()
            self._in_flight = 0
            self._max_in_flight = 0

    def begin(self, method: str, path: str, route: str) -> RequestRecord:
        record = RequestRecord(method, path, route, started=time.time())
        with self._lock:
            self._records.append(record)
            self._counts[route] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        return record

    def finish(self, record: RequestRecord) -> None:
        with self._lock:
            record.finished = time.time()
            self._in_flight -= 1

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": [r.to_json() for r in self._records],
                "counts": dict(self._counts),
                "total": sum(self._counts.values()),
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
            }


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def check_key(scope: Scope, api_key: str | None) -> ApiError | None:
    """None if the request carries an acceptable key, else the 401 to answer.

    With ``api_key`` set, ``Authorization: Bearer <key>`` or ``api-key: <key>`` must
    match it; without, any non-empty key is accepted but one must be sent, as the real
    API demands.
    """
    presented = _header(scope, b"api-key")
    authorization = _header(scope, b"authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            presented = token.strip()
    if not presented:
        return ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if api_key is not None and not hmac.compare_digest(
        presented.encode("utf-8", "replace"), api_key.encode("utf-8")
    ):
        return ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
    return None


async def _drain(receive: Receive) -> None:
    """Read and drop the request body, so the error answer reaches the client intact."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _dated(send: Send) -> Send:
    """``send`` adding a ``Date`` header, from the server's clock, to the answer."""

    async def dated_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            date = formatdate(clock.now(), usegmt=True).encode("latin-1")
            message = {**message, "headers": [*message.get("headers", []), (b"date", date)]}
        await send(message)

    return dated_send


async def _send_error(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    await error.response()(scope, receive, send)


class Gate:
    """ASGI middleware: stats, authentication and fault injection (module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        faults: FaultInjector,
        stats: RequestStats,
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.faults = faults
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _dated(send)
        path: str = scope["path"]
        if path.startswith(ADMIN_PREFIX):
            refusal = check_key(scope, self.api_key)
            if refusal is not None:
                await _drain(receive)
                await _send_error(refusal, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        record = self.stats.begin(method, path, route_name(method, path))

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            await send(message)

        try:
            await self._handle(scope, receive, recording_send, record)
        finally:
            self.stats.finish(record)

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, record: RequestRecord
    ) -> None:
        refusal = check_key(scope, self.api_key)
        if refusal is not None:
            await _drain(receive)
            await _send_error(refusal, scope, receive, send)
            return
        decision = self.faults.decide(record.method, record.route)
        if decision is NO_FAULT:
            await self.app(scope, receive, send)
            return
        record.fault = decision.kind
        if decision.latency_s > 0:
            await asyncio.sleep(decision.latency_s)
        if decision.rate_limited:
            await _drain(receive)
            error = ApiError(
                429,
                "Rate limit reached for requests (injected by syncd serve).",
                type="requests",
                code="rate_limit_exceeded",
                headers=retry_after_headers(decision.retry_after),
            )
            await _send_error(error, scope, receive, send)
        elif decision.error_status is not None:
            await _drain(receive)
            error = ApiError(
                decision.error_status,
                f"Injected fault: HTTP {decision.error_status} (syncd serve fault injection).",
                type="server_error" if decision.error_status >= 500 else "invalid_request_error",
                headers=retry_after_headers(decision.retry_after),
            )
            await _send_error(error, scope, receive, send)
        elif decision.lose_answer:
            await self._lose_answer(scope, receive, send, decision)
        else:
            await self.app(scope, receive, send)

    async def _lose_answer(
        self, scope: Scope, receive: Receive, send: Send, decision: FaultDecision
    ) -> None:
        """Run the handler for real, swallow its answer, send a 502 instead."""
        status: list[int] = []

        async def swallow(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))

        await self.app(scope, receive, swallow)
        error = ApiError(
            502,
            "Bad gateway: the answer was lost (syncd serve fault injection).",
            type="server_error",
            headers=retry_after_headers(decision.retry_after),
        )
        await _send_error(error, scope, receive, send)
