"""Sending one request to a Files API server: the gate, retries, and what errors mean.

``Transport`` is the layer below ``HttpFilesRemote`` and ``HttpUploadsApi`` (and the
only place that holds the ``httpx.Client``)::

    HttpFilesRemote / HttpUploadsApi   what to send, what the answer means
      Transport.retry()        retry errors whose verdict is RETRYABLE, backoff + jitter
        Transport.send()       RetryGate.wait() right before sending; translate errors
          httpx.Client         one connection pool shared by all worker threads

Every attempt, retry, 429 and wait at the gate is reported to ``observer`` (a
``syncd.remote.observer.RequestObserver``; the daemon's metrics set one), by route name.

Errors from below are translated here, at the boundary, into the most specific
``syncd.errors.RemoteError``:

- HTTP answers: ``error_for_status`` with the server's ``error.message`` from the
  envelope; 401/403 become ``FatalError`` saying the key is wrong or lacks rights (the
  key itself never appears in a message). Any answer with a Retry-After, and every 429,
  pauses the shared ``RetryGate``. A redirect (3xx, never followed) is permanent: the
  base URL is wrong.
- transport failures: ``RetryableError`` (connect errors, timeouts, resets, protocol
  errors), except for requests that create a File, below.

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
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from syncd import __version__
from syncd.errors import (
    AmbiguousError,
    FatalError,
    PermanentError,
    RemoteError,
    RetryableError,
    error_for_status,
)
from syncd.remote.observer import NullObserver, RequestObserver, endpoint_name
from syncd.remote.retry import DEFAULT_RATE_LIMIT_PAUSE, RetryGate, RetryPolicy, parse_retry_after
from syncd.remote.settings import RemoteSettings

T = TypeVar("T")
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_KEY_LIKE = re.compile(r"\b(sk-|key-)\S+")


def _error_message(response: httpx.Response) -> tuple[str, str | None]:
    """The server's ``error.message`` and ``error.code``, or a short text of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        message = str(error.get("message") or response.reason_phrase)
        code = error.get("code")
        return message, str(code) if code is not None else None
    text = response.text.strip()
    return (text[:200] if text else response.reason_phrase or "no message"), None


class Transport:
    """One server's connection pool, retry gate and retry policy (module docstring).

    Thread-safe; shared by every worker. ``pool_size`` is the number of connections kept
    (give at least the worker count); ``gate`` is shared with other transports to the
    same server, if any (one is made otherwise).
    """

    def __init__(
        self,
        settings: RemoteSettings,
        *,
        gate: RetryGate | None = None,
        pool_size: int = 16,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.gate = gate if gate is not None else RetryGate(max_block=settings.max_retry_after)
        self.policy = policy or RetryPolicy(
            max_attempts=settings.max_attempts,
            backoff_base=settings.backoff_base,
            backoff_cap=settings.backoff_cap,
            max_retry_after=settings.max_retry_after,
        )
        self._client = httpx.Client(
            base_url=settings.base_url + "/",
            headers={"User-Agent": f"syncd/{__version__}", **settings.headers()},
            params=settings.query_params(),
            timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            follow_redirects=False,
        )
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

    def retry(self, operation: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` under the retry policy (``operation`` names it in the log)."""
        result: T = self.policy.retrying(operation, on_retry=self._on_retry)(attempt)
        return result

    def _on_retry(self) -> None:
        self.observer.retried(getattr(self._last, "endpoint", "other"))

    def _started(self, request: httpx.Request) -> tuple[str, float]:
        """Before sending: the gate (its wait reported), then the endpoint and the time."""
        endpoint = endpoint_name(request.method, request.url.path)
        self._last.endpoint = endpoint
        before = time.monotonic()
        self.gate.wait()
        waited = time.monotonic() - before
        if waited > 0.001:
            self.observer.paced(waited)
        return endpoint, time.monotonic()

    def _finished(self, endpoint: str, started: float, status: int | None) -> None:
        elapsed = time.monotonic() - started
        self.observer.request_finished(
            endpoint, "error" if status is None else str(status), elapsed
        )
        if status == 429:
            self.observer.rate_limited(endpoint)

    def send(self, request: httpx.Request, *, what: str, stream: bool = False) -> httpx.Response:
        """Send once, after the gate; an answer >= 300 becomes the matching RemoteError."""
        endpoint, started = self._started(request)
        try:
            response = self._client.send(request, stream=stream)
        except httpx.TransportError as exc:
            self._finished(endpoint, started, None)
            raise self.transport_error(exc, what, ambiguous=False) from exc
        self._finished(endpoint, started, response.status_code)
        if response.status_code >= 300:
            if stream:
                response.read()
                response.close()
            raise self.status_error(response, what)
        return response

    def send_creating(
        self, request: httpx.Request, *, what: str, sent_all: Callable[[], bool]
    ) -> httpx.Response:
        """Send a request that creates a File, once, deciding retryable versus ambiguous
        (module docstring). ``sent_all()`` says whether the body's last byte left."""
        endpoint, started = self._started(request)
        try:
            response = self._client.send(request)
        except httpx.TransportError as exc:
            self._finished(endpoint, started, None)
            raise self.transport_error(exc, what, ambiguous=sent_all()) from exc
        self._finished(endpoint, started, response.status_code)
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
        return response

    def json_object(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """The answer's body as a JSON object (RetryableError if it is not JSON at all)."""
        try:
            body = response.json()
        except ValueError as exc:
            raise RetryableError(
                f"{what}: the answer is not JSON", status=response.status_code
            ) from exc
        if not isinstance(body, dict):
            raise PermanentError(
                f"{what}: the answer is not a JSON object", status=response.status_code
            )
        return body

    def transport_error(
        self, exc: httpx.TransportError, what: str, *, ambiguous: bool
    ) -> RemoteError:
        """The RemoteError for a request that got no answer (``ambiguous``: its whole
        body had left, so it may have been carried out)."""
        detail = self.scrub(str(exc)) or type(exc).__name__
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
        """The RemoteError for an answer >= 300; pauses the gate as the server asks."""
        status = response.status_code
        if status < 400:  # redirects are not followed: a POST must not be re-sent blindly
            location = response.headers.get("location", "elsewhere")
            return PermanentError(
                f"{what}: the server redirects to {location}; set the base URL to where "
                "the API really is",
                status=status,
            )
        message, code = _error_message(response)
        message = self.scrub(message)
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
        """``text`` without the API key or anything shaped like one (servers echo keys)."""
        if self.settings.api_key:
            text = text.replace(self.settings.api_key, "[REDACTED]")
        return _KEY_LIKE.sub("[REDACTED]", text)
