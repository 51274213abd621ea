"""The connection layer of `syncd serve`: uvicorn's h11 protocol with bounds of its own.

uvicorn holds a connection that never sends a complete request head forever (its
keep-alive timer runs only after an answer and stops at the first byte), never drops a
client that stops reading an answer, and answers over ``limit_concurrency`` or to a
malformed request in plain text. ``GuardedProtocol`` adds, per connection:

- a **header timeout** (``ServerLimits.header_timeout``, 10 s): from the connection's
  start, or from the first byte after an answer, until the request head is complete.
  Nothing received: the connection is closed quietly (as an idle keep-alive one is,
  after ``KEEP_ALIVE_SECONDS``); part of a head: a 408 in the error envelope, then
  closed; the rest of a body already answered, still trickling in: closed.
- a **send timeout** (``ServerLimits.idle_timeout``, 60 s): a client that reads nothing
  of an answer for that long while the server's buffer is full is dropped (its open
  file handle closes with the answer).
- a **connection limit** (``ServerLimits.max_connections``, 256): a connection beyond
  it is answered 503 in the envelope (``retry-after: 1``) and closed at once, before
  anything is read: so file descriptors stay bounded however many stalled clients
  connect, and the header timeout frees the slots they take.
- a request head (request line and headers) over ``MAX_HEAD_BYTES`` (16 KiB) is a 431,
  malformed HTTP (h11's parse errors) a 400, both in the envelope.

The request body's deadlines are the gate's (``syncd.server.gate.BodyDeadline``);
``build_config`` hands uvicorn the rest: this protocol, keep-alive
``KEEP_ALIVE_SECONDS`` (5 s), no websockets, no limit of its own.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import structlog
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from syncd.server.envelope import ApiError, request_timeout
from syncd.server.gate import BodyTimeouts

MAX_HEAD_BYTES = 16 * 1024
_HEAD_END = re.compile(rb"\n\r?\n")  # where h11 ends a head
KEEP_ALIVE_SECONDS = 5

log = structlog.get_logger()


@dataclass(frozen=True)
class ServerLimits:
    """Timeouts (seconds) and the connection limit; see the module docstring."""

    header_timeout: float = 10.0
    body_timeout: float = 600.0
    idle_timeout: float = 60.0
    max_connections: int = 256

    def body_timeouts(self) -> BodyTimeouts:
        return BodyTimeouts(total=self.body_timeout, idle=self.idle_timeout)


def _too_many_connections(limit: int) -> ApiError:
    return ApiError(
        503,
        f"The server is busy: it already holds {limit} connections. Try again shortly.",
        type="server_error",
        code="too_many_connections",
        headers={"retry-after": "1"},
    )


class GuardedProtocol(H11Protocol):
    """uvicorn's ``H11Protocol`` plus the bounds of the module docstring.

    uvicorn builds one per connection from the class alone: ``with_limits`` makes the
    subclass that carries a server's limits.
    """

    limits: ClassVar[ServerLimits] = ServerLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._armed_cycle: object = None
        self._head: bytearray | None = None  # the request head so far, while one is due
        self._send_timer: asyncio.TimerHandle | None = None
        self._closed_early = False

    # --- the connection limit and the header timeout ---------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            self._closed_early = True
            log.warning("connection_refused", limit=self._limits.max_connections)
            self._answer_and_close(_too_many_connections(self._limits.max_connections))
            return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._closed_early:
            return
        if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm_head_timer()  # the first byte after an answer: a head must follow
        if self._head_timer is not None:
            self._head_bytes += len(data)
        if self._head is not None and self._head_too_large(data):
            self._closed_early = True
            self._answer_and_close(
                ApiError(431, f"The request head is larger than {MAX_HEAD_BYTES} bytes.")
            )
            return
        super().data_received(data)
        if self._head_timer is not None and self.cycle is not self._armed_cycle:
            self._cancel_head_timer()  # a new head is in: the body has deadlines of its own

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_send_timer()
        super().connection_lost(exc)

    def _head_too_large(self, data: bytes) -> bool:
        """Track the head being received; True once it is over ``MAX_HEAD_BYTES``.

        h11's own cap only applies to a head still incomplete after a read: one that
        arrives whole in a single read would pass whatever its size.
        """
        assert self._head is not None
        self._head += data
        end = _HEAD_END.search(self._head)
        size = len(self._head) if end is None else end.end()
        if end is not None:
            self._head = None
        return size > MAX_HEAD_BYTES

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_bytes = 0
        self._armed_cycle = self.cycle
        self._head = bytearray() if self.conn.their_state is h11.IDLE else None
        self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        self._head = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.cycle is not self._armed_cycle:
            return
        if self._head_bytes == 0 or self.conn.their_state is not h11.IDLE:
            # Idle (closed quietly, like keep-alive), or still trickling the body of a
            # request already answered: nothing to answer.
            self.transport.close()
            return
        log.info("client_stalled", phase="request head", client=self._client_text())
        seconds = self._limits.header_timeout
        self._answer_and_close(request_timeout(f"the request head took longer than {seconds:g} s"))

    # --- the send timeout ---------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        self._cancel_send_timer()
        self._send_timer = self.loop.call_later(self._limits.idle_timeout, self._send_timeout)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_send_timer()

    def _cancel_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_timeout(self) -> None:
        self._send_timer = None
        log.info("client_stalled", phase="reading the answer", client=self._client_text())
        self.transport.abort()  # connection_lost follows; the answer's task ends

    # --- answers below HTTP -------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """A malformed request (h11 could not parse it): a 400 in the envelope."""
        self._answer_and_close(
            ApiError(400, "Invalid HTTP request: its request line or headers could not be parsed.")
        )

    def _answer_and_close(self, error: ApiError) -> None:
        self._cancel_head_timer()
        if not self.transport.is_closing():
            self.transport.write(error.raw_response())
            self.transport.close()

    def _client_text(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "?"


def with_limits(limits: ServerLimits) -> type[GuardedProtocol]:
    """A ``GuardedProtocol`` subclass enforcing ``limits``."""
    return type("GuardedProtocolWithLimits", (GuardedProtocol,), {"limits": limits})


def build_config(app: ASGIApp, limits: ServerLimits) -> uvicorn.Config:
    """A quiet single-worker uvicorn configuration with ``GuardedProtocol``."""
    return uvicorn.Config(
        app,
        http=with_limits(limits),
        ws="none",
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        limit_concurrency=None,
        server_header=False,
        date_header=False,  # the Gate dates answers by the server's clock
    )
