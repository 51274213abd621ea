"""Everything a request passes before a handler: deadline, key, statistics, rate limit, faults.

``Gate`` is a plain ASGI middleware (no BaseHTTPMiddleware: it must not buffer bodies).
For every request it bounds the reading of the body (``BodyDeadline``), then checks the
key: a request without an acceptable key is answered 401 and only counted
(``unauthenticated``), so strangers cannot fill the statistics. An authenticated request
outside ``/_syncd/`` is recorded in ``RequestStats`` as ``{method, path, route, status,
started, finished, fault}``, then meets the rate limiter (``syncd.server.ratelimit``:
a 429 beyond the bucket, and the ``x-ratelimit-*`` headers on every answer of a limited
route), then the fault decision:

- rate limit / injected error: the body is read and dropped, then the error is sent
  (answering before the body is read makes clients see a reset, not the status);
- latency: a sleep before the handler runs;
- lost answer (POSTs only): the handler runs (the file is stored, the part added...) and
  its answer is replaced by a 502.

Bounds: the request body must arrive within ``BodyTimeouts.total`` (600 s) of the
request head, with no silence longer than ``BodyTimeouts.idle`` (60 s); past either the
answer is a 408 and the connection is closed. The statistics keep the last
``MAX_RECORDS`` (100,000) requests with paths cut to ``MAX_PATH_CHARS`` (200): about
40 MB at most.

``/_syncd/*`` (statistics and fault control for tests) needs the same key as the API and
is never recorded, limited nor faulted.

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
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncd.server import clock
from syncd.server.envelope import ApiError, request_timeout
from syncd.server.faults import NO_FAULT, FaultDecision, FaultInjector, retry_after_headers
from syncd.server.ratelimit import RateLimiter, rate_limited

ADMIN_PREFIX = "/_syncd/"
MAX_RECORDS = 100_000
MAX_PATH_CHARS = 200

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
    # Vector stores (syncd.server.vector_stores).
    ("POST", re.compile(r"/v1/vector_stores/?"), "vs_create"),
    ("GET", re.compile(r"/v1/vector_stores/?"), "vs_list"),
    ("GET", re.compile(r"/v1/vector_stores/[^/]+"), "vs_retrieve"),
    ("DELETE", re.compile(r"/v1/vector_stores/[^/]+"), "vs_delete"),
    ("POST", re.compile(r"/v1/vector_stores/[^/]+/files/?"), "vs_file_create"),
    ("GET", re.compile(r"/v1/vector_stores/[^/]+/files/?"), "vs_file_list"),
    ("GET", re.compile(r"/v1/vector_stores/[^/]+/files/[^/]+"), "vs_file_retrieve"),
    ("POST", re.compile(r"/v1/vector_stores/[^/]+/files/[^/]+"), "vs_file_update"),
    ("DELETE", re.compile(r"/v1/vector_stores/[^/]+/files/[^/]+"), "vs_file_delete"),
    ("POST", re.compile(r"/v1/vector_stores/[^/]+/file_batches/?"), "vs_batch_create"),
    ("GET", re.compile(r"/v1/vector_stores/[^/]+/file_batches/[^/]+"), "vs_batch_retrieve"),
    ("POST", re.compile(r"/v1/vector_stores/[^/]+/file_batches/[^/]+/cancel"), "vs_batch_cancel"),
    ("GET", re.compile(r"/v1/vector_stores/[^/]+/file_batches/[^/]+/files"), "vs_batch_files"),
)
ROUTE_NAMES = tuple(name for _, _, name in _ROUTES)


def route_name(method: str, path: str) -> str:
    """The API operation a request is for (``create``, ``list``, ...), or ``other``."""
    for route_method, pattern, name in _ROUTES:
        if method == route_method and pattern.fullmatch(path):
            return name
    return "other"


@dataclass(slots=True)
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
    """Every authenticated request (the last ``max_records``), counts per route, and how
    many requests were refused for their key."""

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self._lock = threading.Lock()
        self._max_records = max_records
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._records: deque[RequestRecord] = deque(maxlen=self._max_records)
            self._counts: Counter[str] = Counter()
            self._in_flight = 0
            self._max_in_flight = 0
            self._unauthenticated = 0

    def count_unauthenticated(self) -> None:
        with self._lock:
            self._unauthenticated += 1

    def begin(self, method: str, path: str, route: str) -> RequestRecord:
        record = RequestRecord(method, path[:MAX_PATH_CHARS], route, started=time.time())
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
                "unauthenticated": self._unauthenticated,
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


@dataclass(frozen=True)
class BodyTimeouts:
    """How long a request body may take in all, and the longest silence within it."""

    total: float = 600.0
    idle: float = 60.0


class BodyDeadline:
    """``receive`` with the body's deadlines: raises the 408 ApiError when one passes.

    Only while the body is still coming: once its last chunk is in, calls pass straight
    through (a streaming answer listens on ``receive`` for the client going away).
    """

    def __init__(
        self,
        receive: Receive,
        timeouts: BodyTimeouts,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._receive = receive
        self._timeouts = timeouts
        self._clock = clock
        self._deadline = clock() + timeouts.total
        self._done = False

    async def __call__(self) -> Message:
        if self._done:
            return await self._receive()
        left = self._deadline - self._clock()
        wait = min(self._timeouts.idle, left)
        try:
            if wait <= 0:
                raise TimeoutError
            async with asyncio.timeout(wait):
                message = await self._receive()
        except TimeoutError:
            self._done = True  # after the 408 nothing waits on the body any more
            if wait < self._timeouts.idle:
                raise request_timeout(
                    f"the request body took longer than {self._timeouts.total:g} s"
                ) from None
            raise request_timeout(
                f"no part of the request body arrived for {self._timeouts.idle:g} s"
            ) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._done = True
        return message


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


async def _refuse(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    """Drain the body (within its deadline), then answer ``error``; past the deadline the
    same answer closes the connection."""
    try:
        await _drain(receive)
    except ApiError:
        error.headers = {**error.headers, "connection": "close"}
    await error.response()(scope, receive, send)


def _with_headers(send: Send, headers: dict[str, str]) -> Send:
    """``send`` adding ``headers`` to the answer's start."""
    encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *encoded]}
        await send(message)

    return sending


class Gate:
    """ASGI middleware: deadline, key, stats, rate limit and faults (module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        faults: FaultInjector,
        stats: RequestStats,
        limiter: RateLimiter | None = None,
        body_timeouts: BodyTimeouts | None = None,
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.faults = faults
        self.stats = stats
        self.limiter = limiter or RateLimiter()
        self.body_timeouts = body_timeouts or BodyTimeouts()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _dated(send)
        receive = BodyDeadline(receive, self.body_timeouts)
        path: str = scope["path"]
        refusal = check_key(scope, self.api_key)
        if path.startswith(ADMIN_PREFIX):
            if refusal is not None:
                await _refuse(refusal, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if refusal is not None:
            self.stats.count_unauthenticated()
            await _refuse(refusal, scope, receive, send)
            return
        method: str = scope["method"]
        record = self.stats.begin(method, path, route_name(method, path))

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            await send(message)

        try:
            await self._limit(scope, receive, recording_send, record)
        finally:
            self.stats.finish(record)

    async def _limit(
        self, scope: Scope, receive: Receive, send: Send, record: RequestRecord
    ) -> None:
        """The rate limiter's verdict: a 429, or its headers on whatever is answered."""
        verdict = self.limiter.take(record.route)
        if verdict is None:
            await self._handle(scope, receive, send, record)
        elif verdict.allowed:
            await self._handle(scope, receive, _with_headers(send, verdict.headers()), record)
        else:
            rate = self.limiter.limits[record.route]
            label = f"{record.method} {record.path}"
            await _refuse(rate_limited(record.route, label, verdict, rate), scope, receive, send)

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, record: RequestRecord
    ) -> None:
        decision = self.faults.decide(record.method, record.route)
        if decision is NO_FAULT:
            await self.app(scope, receive, send)
            return
        record.fault = decision.kind
        if decision.latency_s > 0:
            await asyncio.sleep(decision.latency_s)
        if decision.rate_limited:
            error = ApiError(
                429,
                "Rate limit reached for requests (injected by syncd serve).",
                type="requests",
                code="rate_limit_exceeded",
                headers=retry_after_headers(decision.retry_after),
            )
            await _refuse(error, scope, receive, send)
        elif decision.error_status is not None:
            error = ApiError(
                decision.error_status,
                f"Injected fault: HTTP {decision.error_status} (syncd serve fault injection).",
                type="server_error" if decision.error_status >= 500 else "invalid_request_error",
                headers=retry_after_headers(decision.retry_after),
            )
            await _refuse(error, scope, receive, send)
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
        await error.response()(scope, receive, send)
