"""``HttpFilesRemote``: the Files API over httpx, the only module that knows about httpx.

Layers, each with one policy::

    HttpFilesRemote.upload/list_files/retrieve/download/delete   what to send, what it means
      RetryPolicy.retrying()    retry RetryableError (not AmbiguousError), backoff + jitter
        _send()                 RetryGate.wait() right before sending; translate errors
          httpx.Client          one connection pool shared by all worker threads

Errors from below are translated here, at the boundary, into the most specific
``syncd.errors.RemoteError``:

- HTTP answers: ``error_for_status`` with the server's ``error.message`` from the
  envelope; 401/403 become ``FatalError`` saying the key is wrong or lacks rights (the
  key itself never appears in a message). Any answer with a Retry-After, and every 429,
  pauses the shared ``RetryGate``.
- transport failures: ``RetryableError`` (connect errors, timeouts, resets, protocol
  errors), except for uploads, below.

Uploads and ambiguity. The API has no idempotency key, so an upload must only be
retried when the server provably did not store the file. The rule:

- retried (``RetryableError``/``RateLimitedError``): the connection was never made
  (connect error, connect or pool timeout); or the file's last byte was never handed to
  the connection (the server cannot hold the whole file); or the server answered 408,
  409 or 429 (it refused the request without carrying it out).
- ``AmbiguousError``, never retried here: the whole body was sent and then no answer
  came (read timeout, reset, protocol error), or the answer was a 5xx (the local server
  injects exactly that: file stored, then 502), or a 2xx whose body is not a file
  object. The caller reconciles by listing the remote files.
- anything else is the status's verdict (``error_for_status``): permanent or fatal; a
  redirect (3xx, never followed) is permanent: the base URL is wrong.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import quote

import httpx
import structlog

from syncd import __version__
from syncd.api import LIST_PAGE_LIMIT, RemoteFile
from syncd.errors import (
    AmbiguousError,
    FatalError,
    FileChangedError,
    NotFoundError,
    PermanentError,
    RemoteError,
    RetryableError,
    error_for_status,
)
from syncd.remote.protocol import UploadsApi
from syncd.remote.retry import DEFAULT_RATE_LIMIT_PAUSE, RetryGate, RetryPolicy, parse_retry_after
from syncd.remote.settings import RemoteSettings

T = TypeVar("T")
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_KEY_LIKE = re.compile(r"\b(sk-|key-)\S+")

log = structlog.get_logger(__name__)


class _SizedReader(io.RawIOBase):
    """Exactly ``size`` bytes of an open file, the size taken when the upload starts.

    httpx learns the length from ``seek``/``tell`` (no ``fileno``, so it never re-stats
    the file) and reads 64 KiB at a time, so memory stays flat. If the file turns out
    shorter or longer than ``size``, reading raises ``FileChangedError`` before
    the multipart closing boundary goes out, so the server never sees a whole body.
    """

    def __init__(self, file: BinaryIO, size: int) -> None:
        super().__init__()
        self._file = file
        self.size = size
        self._pos = 0
        self.sent_all = False  # the last byte of the file has been handed to httpx

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        self._pos = max(0, min(self.size, base + offset))
        self._file.seek(self._pos)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        want = self.size - self._pos if n < 0 else min(n, self.size - self._pos)
        if want == 0:
            if self._file.read(1):
                raise FileChangedError(f"grew beyond {self.size} bytes")
            self.sent_all = True
            return b""
        chunk = self._file.read(want)
        if not chunk:
            raise FileChangedError(f"shrank below {self.size} bytes")
        self._pos += len(chunk)
        return chunk


class _Unrepeatable(Exception):
    """Wraps a retryable error that must not be retried here (output already written)."""

    def __init__(self, error: RemoteError) -> None:
        super().__init__(str(error))
        self.error = error


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


class HttpFilesRemote:
    """``FilesRemote`` over httpx; thread-safe, one instance shared by all workers.

    ``pool_size`` is the number of connections kept (give at least the worker count);
    ``page_size`` is the ``limit`` asked per list page; ``gate`` is shared with other
    remotes talking to the same server, if any (one is made otherwise). See the module
    docstring for the error and retry rules.
    """

    def __init__(
        self,
        settings: RemoteSettings,
        *,
        gate: RetryGate | None = None,
        pool_size: int = 16,
        page_size: int = LIST_PAGE_LIMIT,
        policy: RetryPolicy | None = None,
    ) -> None:
        if not 1 <= page_size <= LIST_PAGE_LIMIT:
            raise ValueError(f"page_size must be 1..{LIST_PAGE_LIMIT}")
        self.settings = settings
        self.gate = gate if gate is not None else RetryGate(max_block=settings.max_retry_after)
        self.policy = policy or RetryPolicy(
            max_attempts=settings.max_attempts,
            backoff_base=settings.backoff_base,
            backoff_cap=settings.backoff_cap,
            max_retry_after=settings.max_retry_after,
        )
        self.page_size = page_size
        self._client = httpx.Client(
            base_url=settings.base_url + "/",
            headers={"User-Agent": f"syncd/{__version__}", **settings.headers()},
            params=settings.query_params(),
            timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            follow_redirects=False,
        )

    # -- the FilesRemote interface ------------------------------------------------------

    def upload(
        self,
        path: Path,
        filename: str,
        purpose: str,
        expires_after_seconds: int | None = None,
    ) -> RemoteFile:
        """POST /files, streaming ``path``; ``filename`` is sent as given (UTF-8, raw).

        Raises ``AmbiguousError`` when the file may be stored although no usable answer
        came back (see the module docstring), ``OSError`` if ``path`` cannot be read.
        """
        fields = {"purpose": purpose}
        if expires_after_seconds is not None:
            fields["expires_after[anchor]"] = "created_at"
            fields["expires_after[seconds]"] = str(expires_after_seconds)

        def attempt() -> RemoteFile:
            with open(path, "rb") as file:
                reader = _SizedReader(file, os.fstat(file.fileno()).st_size)
                request = self._client.build_request(
                    "POST", "files", data=fields, files={"file": (filename, cast(BinaryIO, reader))}
                )
                response = self._send_upload(request, reader, filename)
            try:
                return RemoteFile.from_json(response.json())
            except (ValueError, KeyError, TypeError) as exc:
                raise AmbiguousError(
                    f"upload of {filename}: the server answered {response.status_code} "
                    "without a file object; it may have stored the file",
                    status=response.status_code,
                ) from exc

        return self._retry(f"upload {filename}", attempt)

    def list_files(self, purpose: str | None = None, order: str = "desc") -> Iterator[RemoteFile]:
        """Every file (of ``purpose``), page by page with ``after`` until ``has_more`` ends.

        Raises ``PermanentError`` if the server hands out a cursor it already gave, or
        says there is more but sends an empty page, instead of looping for ever.
        """
        params: dict[str, str | int] = {"limit": self.page_size, "order": order}
        if purpose is not None:
            params["purpose"] = purpose
        cursors: set[str] = set()
        while True:
            page_params = dict(params)

            def fetch(page_params: dict[str, str | int] = page_params) -> dict[str, Any]:
                request = self._client.build_request("GET", "files", params=page_params)
                try:
                    response = self._send(request, what="list files")
                except NotFoundError as exc:  # GET /files missing: the base URL is wrong
                    raise PermanentError(
                        f"list files: {request.url} not found; is the base URL right?",
                        status=404,
                    ) from exc
                return self._json_object(response, "list files")

            page = self._retry("list files", fetch)
            data = page.get("data")
            if not isinstance(data, list):
                raise PermanentError("list files: the answer has no 'data' list")
            for item in data:
                yield RemoteFile.from_json(item)
            if not page.get("has_more"):
                return
            if not data:
                raise PermanentError("list files: has_more is true but the page is empty")
            cursor = str(data[-1]["id"])
            if cursor in cursors:
                raise PermanentError(f"list files: the server repeated the page after {cursor}")
            cursors.add(cursor)
            params["after"] = cursor

    def retrieve(self, file_id: str) -> RemoteFile:
        """GET /files/{id}; ``NotFoundError`` if there is no such file."""

        def attempt() -> RemoteFile:
            request = self._client.build_request("GET", self._file_path(file_id))
            what = f"retrieve {file_id}"
            return RemoteFile.from_json(self._json_object(self._send(request, what=what), what))

        return self._retry(f"retrieve {file_id}", attempt)

    def download(self, file_id: str, out: BinaryIO, expected_bytes: int | None = None) -> int:
        """Stream the file's content into ``out``; returns the byte count.

        The count is checked against ``expected_bytes`` when given, else against the
        file's ``bytes`` from a ``retrieve`` call (``PermanentError`` if they differ). A
        transfer that breaks off is retried from the start only if ``out`` can be rewound
        (seek + truncate); otherwise the ``RetryableError`` is raised.
        """
        expected = self.retrieve(file_id).bytes if expected_bytes is None else expected_bytes
        try:
            start: int | None = out.tell() if out.seekable() else None
        except (OSError, ValueError, AttributeError):
            start = None
        what = f"download {file_id}"

        def rewind() -> bool:
            """Undo a broken attempt's output; False if ``out`` cannot be rewound."""
            if start is None:
                return False
            try:
                out.seek(start)
                out.truncate()
            except (OSError, ValueError):
                return False
            return True

        def attempt() -> int:
            written = 0
            request = self._client.build_request(
                "GET",
                self._file_path(file_id) + "/content",
                headers={"Accept": "application/binary"},
            )
            response = self._send(request, what=what, stream=True)
            try:
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    written += len(chunk)
            except httpx.TransportError as exc:
                error = self._transport_error(exc, what, ambiguous=False)
                if written and not rewind():
                    raise _Unrepeatable(error) from exc
                raise error from exc
            finally:
                response.close()
            return written

        try:
            written = self._retry(what, attempt)
        except _Unrepeatable as wrapped:
            raise wrapped.error from wrapped.__cause__
        if written != expected:
            raise PermanentError(f"{what}: got {written} bytes but the file has {expected}")
        return written

    def delete(self, file_id: str) -> None:
        """DELETE /files/{id}; a file that is already gone counts as deleted."""

        def attempt() -> None:
            request = self._client.build_request("DELETE", self._file_path(file_id))
            try:
                body = self._json_object(self._send(request, what=f"delete {file_id}"), "delete")
            except NotFoundError:
                return
            if body.get("deleted") is False:
                raise PermanentError(f"delete {file_id}: the server did not delete it")

        self._retry(f"delete {file_id}", attempt)

    def uploads_api(self) -> UploadsApi:
        """The Uploads API over this remote's connections, gate and retry policy."""
        from syncd.remote.uploads_http import HttpUploadsApi  # it builds on this module

        return HttpUploadsApi(self)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpFilesRemote:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sending and translating --------------------------------------------------------

    @staticmethod
    def _file_path(file_id: str) -> str:
        return "files/" + quote(file_id, safe="")

    def _retry(self, operation: str, attempt: Callable[[], T]) -> T:
        result: T = self.policy.retrying(operation)(attempt)
        return result

    def _send(self, request: httpx.Request, *, what: str, stream: bool = False) -> httpx.Response:
        """Send once, after the gate; an answer >= 400 becomes the matching RemoteError."""
        self.gate.wait()
        try:
            response = self._client.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, what, ambiguous=False) from exc
        if response.status_code >= 300:
            if stream:
                response.read()
                response.close()
            raise self._status_error(response, what)
        return response

    def _send_upload(
        self, request: httpx.Request, reader: _SizedReader, filename: str
    ) -> httpx.Response:
        """Send an upload once, deciding retryable versus ambiguous (module docstring)."""
        what = f"upload of {filename}"
        self.gate.wait()
        try:
            response = self._client.send(request)
        except FileChangedError as exc:
            raise RetryableError(f"{what}: the file changed while it was sent ({exc})") from exc
        except httpx.TransportError as exc:
            raise self._transport_error(exc, what, ambiguous=reader.sent_all) from exc
        if response.status_code >= 300:
            error = self._status_error(response, what)
            if response.status_code >= 500 and reader.sent_all:
                raise AmbiguousError(
                    f"{error.message}; the server may have stored the file",
                    status=error.status,
                    retry_after=error.retry_after,
                    code=error.code,
                )
            if response.status_code == 404:  # POST /files missing: the base URL is wrong
                raise PermanentError(
                    f"{what}: {self._client.base_url}files not found; is the base URL right?",
                    status=404,
                )
            raise error
        return response

    def _transport_error(
        self, exc: httpx.TransportError, what: str, *, ambiguous: bool
    ) -> RemoteError:
        detail = self._scrub(str(exc)) or type(exc).__name__
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

    def _status_error(self, response: httpx.Response, what: str) -> RemoteError:
        status = response.status_code
        if status < 400:  # redirects are not followed: a POST must not be re-sent blindly
            location = response.headers.get("location", "elsewhere")
            return PermanentError(
                f"{what}: the server redirects to {location}; set the base URL to where "
                "the API really is",
                status=status,
            )
        message, code = _error_message(response)
        message = self._scrub(message)
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

    def _json_object(self, response: httpx.Response, what: str) -> dict[str, Any]:
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

    def _scrub(self, text: str) -> str:
        """``text`` without the API key or anything shaped like one (servers echo keys)."""
        if self.settings.api_key:
            text = text.replace(self.settings.api_key, "[REDACTED]")
        return _KEY_LIKE.sub("[REDACTED]", text)
