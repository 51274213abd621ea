"""Sending one request to a Files API server: the gate, retries, and what errors mean.

``Transport`` is the layer below ``HttpFilesRemote`` and ``HttpUploadsApi`` (and the
only place that holds the ``httpx.Client``)::

    HttpFilesRemote / HttpUploadsApi   what to send, what the answer means
      Transport.retry()        retry errors whose verdict is RETRYABLE, backoff + jitter
        Transport.send()       RetryGate.wait() and Pacer.acquire() right before
                               sending, Pacer.observe() the answer; translate errors
          httpx.Client         one connection pool shared by all worker threads

The ``Pacer`` (``syncd.remote.pacing``) spaces requests under the server's rate limit;
``interrupt_waits()`` (a stop) ends every wait for it, the gate or a retry's backoff.
Every attempt, retry, 429 and wait at the gate or the pacer is reported to ``observer``
(a ``syncd.remote.observer.RequestObserver``; the daemon's metrics set one), by route.

Errors from below are translated here, at the boundary, into the most specific
``syncd.errors.RemoteError``:

- HTTP answers: ``error_for_status`` with the server's ``error.message`` from the
  envelope; 401/403 become ``FatalError`` saying the key is wrong or lacks rights (the
  key itself never appears in a message). Any answer with a Retry-After, and every 429,
  pauses the shared ``RetryGate``. A redirect (3xx, never followed) is permanent: the
  base URL is wrong.
- transport failures: ``RetryableError`` (connect errors, timeouts, resets, protocol
  errors), except for requests that create a File, below.
- answers that are not what the API promises: ``ProtocolError`` (retryable), raised by
  ``json_object`` and by the callers' checks of each field (``RemoteFile.from_json``).

Every request runs under a deadline and every body is read with a cap
(``syncd.remote.bounds`` says which, and why): ``send`` reads a JSON answer whole but
never more than its cap, ``stream`` hands a download's response to the caller inside
the deadline. Text from the server or the HTTP stack (error messages, a redirect's
Location) goes into an error only scrubbed of the key and of URL credentials, with
control characters escaped and at most ``MAX_MESSAGE_CHARS`` long.

Requests that create a File (``POST /files``, ``POST /uploads/{id}/complete``) and
ambiguity. The API has no idempotency key, so such a request must only be retried when
the server provably did not carry it out (``send_creating``):

- retried (``RetryableError``/``RateLimitedError``): the connection was never made
  (connect error, connect or pool timeout); or the body's last byte was never handed to
  the connection (the server cannot hold the whole file); or the server answered 408,
  409 or 429 (it refused the request without carrying it out).
- ``AmbiguousError``, never retried here: the whole body was sent and then no answer
  came (read timeout, reset, protocol error), or the answer was a 5xx (the local server
  injects exactly that: file stored, then 502), or a 2xx whose body is not the File.
  The caller reconciles by listing the remote files.

Every answer's ``Date`` header is kept with the local times the request left and the
answer came (the last ``DATE_SAMPLES``; ``date_samples()``): what bounds the offset of
the server's clock, which reconciliation needs to read ``created_at``.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from syncd import __version__
from syncd.errors import (
    AmbiguousError,
    FatalError,
    PermanentError,
    ProtocolError,
    RemoteError,
    RetryableError,
    error_for_status,
)
from syncd.log import redact_text, register_secret
from syncd.remote.bounds import (
    ACCEPT_ENCODING,
    ERROR_ANSWER_MAX_BYTES,
    JSON_ANSWER_MAX_BYTES,
    install_deadlines,
    parse_json,
    read_body,
    request_deadline,
)
from syncd.remote.observer import NullObserver, RequestObserver, endpoint_name
from syncd.remote.pacing import Pacer, Ticket
from syncd.remote.protocol import PacingStatus
from syncd.remote.retry import DEFAULT_RATE_LIMIT_PAUSE, RetryGate, RetryPolicy, parse_retry_after
from syncd.remote.settings import RemoteSettings
from syncd.restore.names import printable

T = TypeVar("T")
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_KEY_LIKE = re.compile(r"\b(sk-|key-)\S+")
DATE_SAMPLES = 32
MAX_MESSAGE_CHARS = 300
# Headers that described the body as it travelled, not the decoded bytes kept here.
_TRANSFER_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _error_message(status: int, body: bytes) -> tuple[str, str | None]:
    """The server's ``error.message`` and ``error.code``, or a short text of the body."""
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, RecursionError):
        parsed = None
    reason = httpx.codes.get_reason_phrase(status) or "no message"
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        error = parsed["error"]
        message = error.get("message")
        code = error.get("code")
        return (
            message if isinstance(message, str) and message else reason,
            str(code)[:100] if isinstance(code, str | int) and code is not None else None,
        )
    text = body.decode("utf-8", "replace").strip()
    return (text[:200] if text else reason), None


class Transport:
    """One server's connection pool, retry gate and retry policy (module docstring).

    Thread-safe; shared by every worker. ``pool_size`` is the number of connections kept
    (give at least the worker count); ``gate`` and ``pacer`` are shared with other
    transports to the same server, if any (made from the settings otherwise).
    """

    def __init__(
        self,
        settings: RemoteSettings,
        *,
        gate: RetryGate | None = None,
        pool_size: int = 16,
        policy: RetryPolicy | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.settings = settings
        self.gate = gate if gate is not None else RetryGate(max_block=settings.max_retry_after)
        self.pacer = pacer if pacer is not None else Pacer(settings.pacing)
        self.policy = policy or RetryPolicy(
            max_attempts=settings.max_attempts,
            backoff_base=settings.backoff_base,
            backoff_cap=settings.backoff_cap,
            max_retry_after=settings.max_retry_after,
            sleep=self.pacer.sleep,  # a stop ends a retry's backoff too
        )
        register_secret(settings.api_key)
        self._client = httpx.Client(
            base_url=settings.base_url + "/",
            headers={
                "User-Agent": f"syncd/{__version__}",
                "Accept-Encoding": ACCEPT_ENCODING,
                **settings.headers(),
            },
            params=settings.query_params(),
            timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            follow_redirects=False,
        )
        self._dates: deque[tuple[float, float, int]] = deque(maxlen=DATE_SAMPLES)
        self._dates_lock = threading.Lock()
        install_deadlines(self._client)
        self.observer: RequestObserver = NullObserver()
        self._last = threading.local()  # the endpoint of this thread's last attempt

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    def close(self) -> None:
        self._client.close()

    def build(self, method: str, path: str, **kwargs: Any) -> httpx.Request:
        """A request for ``path`` (relative to the base URL); see ``httpx.build_request``."""
        return self._client.build_request(method, path, **kwargs)

    def date_samples(self) -> list[tuple[float, float, int]]:
        """The last answers' ``(sent, received, Date)``: local unix times and the
        header's whole seconds (oldest first)."""
        with self._dates_lock:
            return list(self._dates)

    def _exchange(self, request: httpx.Request) -> httpx.Response:
        """``httpx.Client.send`` (streamed: the caller reads the body), noting the answer's
        ``Date`` against the local times the request left and its head came back, and
        reporting the attempt (its route, status and time to the answer's head)."""
        endpoint = endpoint_name(request.method, request.url.path)
        sent, started = time.time(), time.monotonic()
        try:
            response = self._client.send(request, stream=True)
        except httpx.TransportError:
            self._finished(endpoint, started, None)
            raise
        received = time.time()
        self._finished(endpoint, started, response.status_code)
        date = response.headers.get("date")
        if date:
            try:
                stamp = int(parsedate_to_datetime(date).timestamp())
            except (TypeError, ValueError, OverflowError, IndexError):
                return response  # a malformed Date says nothing
            with self._dates_lock:
                self._dates.append((sent, received, stamp))
        return response

    def retry(self, operation: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` under the retry policy (``operation`` names it in the log)."""
        result: T = self.policy.retrying(operation, on_retry=self._on_retry)(attempt)
        return result

    def interrupt_waits(self) -> None:
        """A stop: waits for the gate, the pacer or a backoff raise ``StoppedError``."""
        self.gate.interrupt()
        self.pacer.interrupt()

    def resume_waits(self) -> None:
        self.gate.resume()
        self.pacer.resume()

    def pacing_status(self) -> tuple[PacingStatus, ...]:
        return self.pacer.status()

    def _admit(self, request: httpx.Request) -> Ticket | None:
        """Wait for the gate and the request's pacing slot (the gate again after a wait
        for the slot: a pause may have begun meanwhile); the time waited is reported."""
        self._last.endpoint = endpoint_name(request.method, request.url.path)
        before = time.monotonic()
        self.gate.wait()
        ticket = self.pacer.acquire(request.method, request.url.path)
        if ticket is not None and ticket.waited:
            self.gate.wait()
        waited = time.monotonic() - before
        if waited > 0.001:
            self.observer.paced(waited)
        return ticket

    def _on_retry(self) -> None:
        self.observer.retried(getattr(self._last, "endpoint", "other"))

    def _finished(self, endpoint: str, started: float, status: int | None) -> None:
        elapsed = time.monotonic() - started
        self.observer.request_finished(
            endpoint, "error" if status is None else str(status), elapsed
        )
        if status == 429:
            self.observer.rate_limited(endpoint)

    def send(
        self,
        request: httpx.Request,
        *,
        what: str,
        cap: int = JSON_ANSWER_MAX_BYTES,
        deadline: float | None = None,
    ) -> httpx.Response:
        """Send once, after the gate, and read the answer: at most ``cap`` bytes
        (``ProtocolError`` beyond), all within ``deadline`` seconds (default: the
        settings' ``answer_deadline``). An answer >= 300 becomes the matching
        RemoteError. The response returned holds the decoded body."""
        ticket = self._admit(request)
        with request_deadline(deadline or self.settings.answer_deadline):
            try:
                response = self._exchange(request)
                self.pacer.observe(ticket, response.status_code, response.headers)
                if response.status_code >= 300:
                    raise self.status_error(response, what)
                body = read_body(response, cap, what)
            except httpx.TransportError as exc:
                raise self.transport_error(exc, what, ambiguous=False) from exc
        return _with_body(response, body)

    @contextlib.contextmanager
    def stream(
        self, request: httpx.Request, *, what: str, deadline: float
    ) -> Iterator[httpx.Response]:
        """Send once, after the gate; the block reads the body (``bounds.iter_body``),
        and everything, the block included, ends within ``deadline`` seconds. An answer
        >= 300 becomes the matching RemoteError; transport errors while sending too
        (those of the block are the block's to translate). The response is closed."""
        ticket = self._admit(request)
        with request_deadline(deadline):
            try:
                response = self._exchange(request)
            except httpx.TransportError as exc:
                raise self.transport_error(exc, what, ambiguous=False) from exc
            self.pacer.observe(ticket, response.status_code, response.headers)
            try:
                if response.status_code >= 300:
                    raise self.status_error(response, what)
                yield response
            finally:
                response.close()

    def send_creating(
        self,
        request: httpx.Request,
        *,
        what: str,
        sent_all: Callable[[], bool],
        deadline: float,
    ) -> httpx.Response:
        """Send a request that creates a File, once, deciding retryable versus ambiguous
        (module docstring). ``sent_all()`` says whether the body's last byte left. A 2xx
        whose body is over the cap or cut off is ``AmbiguousError``: it may be stored."""
        ticket = self._admit(request)
        with request_deadline(deadline):
            try:
                response = self._exchange(request)
                self.pacer.observe(ticket, response.status_code, response.headers)
                if response.status_code >= 300:
                    error = self.status_error(response, what)
                    if response.status_code >= 500 and sent_all():
                        raise AmbiguousError(
                            f"{error.message}; the server may have stored the file",
                            status=error.status,
                            retry_after=error.retry_after,
                            code=error.code,
                        )
                    raise error
                body = read_body(response, JSON_ANSWER_MAX_BYTES, what)
            except httpx.TransportError as exc:
                raise self.transport_error(exc, what, ambiguous=sent_all()) from exc
            except ProtocolError as exc:
                raise AmbiguousError(
                    f"{exc.message}; the server may have stored the file",
                    status=response.status_code,
                ) from exc
        return _with_body(response, body)

    def json_object(
        self, response: httpx.Response, what: str, *, max_values: int | None = None
    ) -> dict[str, Any]:
        """The answer's body as a JSON object; ``ProtocolError`` if it is not one (not
        JSON, nested too deeply, more than ``max_values`` values, a list, ...)."""
        body = parse_json(response.content, what, max_values=max_values)
        if not isinstance(body, dict):
            raise ProtocolError(
                f"{what}: the answer is not a JSON object", status=response.status_code
            )
        return body

    def transport_error(
        self, exc: httpx.TransportError, what: str, *, ambiguous: bool
    ) -> RemoteError:
        """The RemoteError for a request that got no answer (``ambiguous``: its whole
        body had left, so it may have been carried out)."""
        detail = self.clean(str(exc)) or type(exc).__name__
        if isinstance(exc, _NOT_SENT):
            return RetryableError(f"{what}: cannot connect to {self.settings.base_url}: {detail}")
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
            return PermanentError(f"{what}: {detail}")
        if ambiguous:
            return AmbiguousError(
                f"{what}: no answer after the file was sent ({type(exc).__name__}: {detail}); "
                "the server may have stored it"
            )
        return RetryableError(f"{what}: {type(exc).__name__}: {detail}")

    def status_error(self, response: httpx.Response, what: str) -> RemoteError:
        """The RemoteError for an answer >= 300 (streamed: its first 64 KiB are read for
        the message, the rest is dropped); pauses the gate as the server asks."""
        status = response.status_code
        if status < 400:  # redirects are not followed: a POST must not be re-sent blindly
            response.close()
            location = self.clean(response.headers.get("location", "elsewhere"))
            return PermanentError(
                f"{what}: the server redirects to {location}; set the base URL to where "
                "the API really is",
                status=status,
            )
        try:
            body = read_body(response, ERROR_ANSWER_MAX_BYTES, what, truncate=True)
        except (httpx.TransportError, ProtocolError):
            body = b""  # the status says enough
        message, code = _error_message(status, body)
        message = self.clean(message)
        retry_after = parse_retry_after(response.headers)
        if retry_after is not None:
            self.gate.pause_for(retry_after)
        elif status == 429:
            self.gate.pause_for(DEFAULT_RATE_LIMIT_PAUSE)
        if status in (401, 403):
            return FatalError(
                f"{what}: the API key is wrong or lacks the rights for this request "
                f"({message}); check the key syncd was given (OPENAI_API_KEY or its file)",
                status=status,
                code=code,
            )
        return error_for_status(status, f"{what}: {message}", retry_after=retry_after, code=code)

    def scrub(self, text: str) -> str:
        """``text`` without the API key, anything shaped like one (servers echo keys) or
        a URL's credentials."""
        if self.settings.api_key:
            text = text.replace(self.settings.api_key, "[REDACTED]")
        return redact_text(_KEY_LIKE.sub("[REDACTED]", text))

    def clean(self, text: str) -> str:
        """Server-provided ``text`` fit for a message: scrubbed, control characters
        escaped, at most ``MAX_MESSAGE_CHARS`` characters."""
        text = printable(self.scrub(text))  # scrubbed whole: a cut could halve a key
        return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def _with_body(response: httpx.Response, body: bytes) -> httpx.Response:
    """A closed response like ``response`` holding ``body`` (decoded) as its content."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in _TRANSFER_HEADERS]
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=response.request
    )
