"""``HttpFilesRemote``: the Files API over HTTP (``FilesRemote``, ``uploads_api()`` and
``vector_stores()``).

What to send for each call and what its answer means; sending itself, retrying and the
translation of errors (including when an upload is ambiguous rather than retryable)
are ``syncd.remote.transport``'s, the deadlines and size caps ``syncd.remote.bounds``'s.
Only ``syncd.remote`` knows about httpx.

Every answer is checked before it is used (``RemoteFile.from_json``): a bad one is a
``ProtocolError``, retried like a 5xx. A listing is checked page by page before any of
its files is yielded, and it is bounded: at most ``max_files`` files (``MAX_LISTED_FILES``,
a million, about 500 MB of ``RemoteFile``s) and ``ceil(max_files / page_size)`` +
``PAGE_SLACK`` pages; a server that pages past either, repeats a page or says there is
more after an empty page ends the listing with ``ProtocolError``, and the caller has no
listing at all (the engine then stops the pass before acting: nothing is deleted or
taken for gone). A download stops, and fails, at the first byte past the expected size.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import quote

import httpx
import structlog

from syncd.api import LIST_PAGE_LIMIT, RemoteFile, check_file_id
from syncd.errors import (
    AmbiguousError,
    FileChangedError,
    NotFoundError,
    PermanentError,
    ProtocolError,
    RemoteError,
    RetryableError,
    WrongEndpointError,
)
from syncd.remote.bounds import (
    LIST_PAGE_MAX_BYTES,
    LIST_VALUES_PER_FILE,
    LIST_VALUES_SLACK,
    iter_body,
    parse_json,
)
from syncd.remote.protocol import PacingStatus, UploadsApi
from syncd.remote.retry import RetryGate, RetryPolicy
from syncd.remote.settings import RemoteSettings
from syncd.remote.transport import Transport
from syncd.remote.vector_stores import VectorStoresApi

T = TypeVar("T")

log = structlog.get_logger(__name__)

MAX_LISTED_FILES = 1_000_000
PAGE_SLACK = 1000  # pages beyond ceil(files / page size): servers may send short pages


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


class HttpFilesRemote:
    """``FilesRemote`` over httpx; thread-safe, one instance shared by all workers.

    ``pool_size`` is the number of connections kept (give at least the worker count);
    ``page_size`` is the ``limit`` asked per list page; ``max_files`` bounds a listing;
    ``gate`` is shared with other remotes talking to the same server, if any (one is
    made otherwise). See the module docstring for the error and retry rules.
    """

    def __init__(
        self,
        settings: RemoteSettings,
        *,
        gate: RetryGate | None = None,
        pool_size: int = 16,
        page_size: int = LIST_PAGE_LIMIT,
        max_files: int = MAX_LISTED_FILES,
        policy: RetryPolicy | None = None,
    ) -> None:
        if not 1 <= page_size <= LIST_PAGE_LIMIT:
            raise ValueError(f"page_size must be 1..{LIST_PAGE_LIMIT}")
        self.settings = settings
        self.page_size = page_size
        self.max_files = max_files
        self.transport = Transport(settings, gate=gate, pool_size=pool_size, policy=policy)

    # -- the FilesRemote interface ------------------------------------------------------

    def upload(
        self,
        path: Path,
        filename: str,
        purpose: str,
        expires_after_seconds: int | None = None,
        *,
        size: int | None = None,
    ) -> RemoteFile:
        """POST /files, streaming ``path``; ``filename`` is sent as given (UTF-8, raw).
        Exactly ``size`` bytes when given, else the size the file has when it is opened.

        Raises ``AmbiguousError`` when the file may be stored although no usable answer
        came back (see the module docstring), ``OSError`` if ``path`` cannot be read.
        """
        fields = {"purpose": purpose}
        if expires_after_seconds is not None:
            fields["expires_after[anchor]"] = "created_at"
            fields["expires_after[seconds]"] = str(expires_after_seconds)

        def attempt() -> RemoteFile:
            with open(path, "rb") as file:
                sending = size if size is not None else os.fstat(file.fileno()).st_size
                reader = _SizedReader(file, sending)
                request = self.transport.build(
                    "POST", "files", data=fields, files={"file": (filename, cast(BinaryIO, reader))}
                )
                response = self._send_upload(request, reader, filename)
            try:
                return RemoteFile.from_json(parse_json(response.content, "upload"))
            except (ValueError, ProtocolError) as exc:
                raise AmbiguousError(
                    f"upload of {filename}: the server answered {response.status_code} "
                    f"without a valid file object ({exc}); it may have stored the file",
                    status=response.status_code,
                ) from exc

        return self.transport.retry(f"upload {filename}", attempt)

    def list_files(self, purpose: str | None = None, order: str = "desc") -> Iterator[RemoteFile]:
        """Every file (of ``purpose``), page by page with ``after`` until ``has_more`` ends.

        Each page is read whole and checked before any of its files is yielded; a bad
        page is retried like a 5xx. Raises ``ProtocolError`` for a page still bad after
        the retries, and instead of looping for ever when the server repeats a cursor,
        says there is more after an empty page, or pages past the bounds (module
        docstring): the caller must then drop what it was given, not use part of it.
        """
        params: dict[str, str | int] = {"limit": self.page_size, "order": order}
        if purpose is not None:
            params["purpose"] = purpose
        max_pages = -(-self.max_files // self.page_size) + PAGE_SLACK
        max_values = LIST_VALUES_PER_FILE * self.page_size + LIST_VALUES_SLACK
        cursors: set[str] = set()
        listed = 0
        for number in range(1, max_pages + 1):
            what = f"list files (page {number})"
            fetch = functools.partial(self._fetch_page, dict(params), what, max_values)
            files, has_more = self.transport.retry("list files", fetch)
            listed += len(files)
            if listed > self.max_files:
                raise ProtocolError(
                    f"list files: more than {self.max_files} files, more than syncd lists; "
                    "the server pages without end"
                )
            yield from files
            if not has_more:
                return
            if not files:
                raise ProtocolError(f"{what}: has_more is true but the page is empty")
            cursor = files[-1].id
            if cursor in cursors:
                raise ProtocolError(f"{what}: the server repeated the page after {cursor}")
            cursors.add(cursor)
            params["after"] = cursor
        raise ProtocolError(
            f"list files: still more after {max_pages} pages ({listed} files); the server "
            "pages without end"
        )

    def _fetch_page(self, params: dict[str, str | int], what: str, max_values: int) -> _Page:
        """One attempt at one listing page (``list_files``)."""
        request = self.transport.build("GET", "files", params=params)
        try:
            response = self.transport.send(request, what=what, cap=LIST_PAGE_MAX_BYTES)
        except NotFoundError as exc:  # GET /files missing: the base URL is wrong
            raise WrongEndpointError(
                f"list files: {self.transport.base_url}files answered 404 (not found); is "
                "the base URL right? It usually ends in /v1",
                status=404,
            ) from exc
        return _read_page(self.transport.json_object(response, what, max_values=max_values), what)

    def retrieve(self, file_id: str) -> RemoteFile:
        """GET /files/{id}; ``NotFoundError`` if there is no such file."""
        what = f"retrieve {file_id}"

        def attempt() -> RemoteFile:
            request = self.transport.build("GET", self._file_path(file_id, what))
            answer = self.transport.json_object(self.transport.send(request, what=what), what)
            try:
                return RemoteFile.from_json(answer)
            except ValueError as exc:
                raise ProtocolError(f"{what}: the answer is not a valid file ({exc})") from None

        return self.transport.retry(what, attempt)

    def download(self, file_id: str, out: BinaryIO, expected_bytes: int | None = None) -> int:
        """Stream the file's content into ``out``; returns the byte count.

        The count is checked against ``expected_bytes`` when given, else against the
        file's ``bytes`` from a ``retrieve`` call (``PermanentError`` if they differ);
        nothing past the expected size is ever written: the download stops at the first
        byte too many. A transfer that breaks off is retried from the start only if
        ``out`` can be rewound (seek + truncate); otherwise the ``RetryableError`` is
        raised. Each attempt has ``download_deadline(expected)`` seconds.
        """
        expected = self.retrieve(file_id).bytes if expected_bytes is None else expected_bytes
        try:
            start: int | None = out.tell() if out.seekable() else None
        except (OSError, ValueError, AttributeError):
            start = None
        what = f"download {file_id}"
        path = self._file_path(file_id, what) + "/content"
        deadline = self.settings.download_deadline(expected)

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
            request = self.transport.build("GET", path, headers={"Accept": "application/binary"})
            with self.transport.stream(request, what=what, deadline=deadline) as response:
                _refuse_announced_excess(response, expected, what)
                try:
                    for piece in iter_body(response, what):
                        if written + len(piece) > expected:
                            raise PermanentError(
                                f"{what}: the server sent more than the file's {expected} "
                                "bytes; stopped there"
                            )
                        out.write(piece)
                        written += len(piece)
                except (httpx.TransportError, ProtocolError) as exc:
                    error = (
                        exc
                        if isinstance(exc, ProtocolError)
                        else self.transport.transport_error(exc, what, ambiguous=False)
                    )
                    if written and not rewind():
                        raise _Unrepeatable(error) from exc
                    raise error from exc
            return written

        try:
            written = self.transport.retry(what, attempt)
        except _Unrepeatable as wrapped:
            raise wrapped.error from wrapped.__cause__
        if written != expected:
            raise PermanentError(f"{what}: got {written} bytes but the file has {expected}")
        return written

    def delete(self, file_id: str) -> None:
        """DELETE /files/{id}; a file that is already gone counts as deleted."""

        what = f"delete {file_id}"
        path = self._file_path(file_id, what)

        def attempt() -> None:
            request = self.transport.build("DELETE", path)
            try:
                body = self.transport.json_object(self.transport.send(request, what=what), what)
            except NotFoundError:
                return
            if body.get("deleted") is False:
                raise PermanentError(f"{what}: the server did not delete it")

        self.transport.retry(what, attempt)

    def pacing_status(self) -> tuple[PacingStatus, ...]:
        """How requests are paced under the server's rate limit (``SupportsPacing``)."""
        return self.transport.pacing_status()

    def interrupt_waits(self) -> None:
        """A stop: requests waiting to be sent give up (``SupportsStop``)."""
        self.transport.interrupt_waits()

    def resume_waits(self) -> None:
        self.transport.resume_waits()

    def date_samples(self) -> list[tuple[float, float, int]]:
        """What the answers' ``Date`` headers said (``SupportsServerClock``)."""
        return self.transport.date_samples()

    def request_time_limit(self, size: int) -> float:
        """How long an upload of ``size`` bytes may run before it is given up (its
        deadline; ``SupportsServerClock``)."""
        return self.settings.upload_deadline(size)

    def uploads_api(self) -> UploadsApi:
        """The Uploads API over this remote's connections, gate and retry policy."""
        from syncd.remote.uploads_http import HttpUploadsApi  # it builds on this module

        return HttpUploadsApi(self.transport)

    def vector_stores(self) -> VectorStoresApi:
        """The Vector Stores API over this remote's connections, gate and retry policy."""
        from syncd.remote.vector_stores_http import HttpVectorStores  # only when used

        return HttpVectorStores(self.transport)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> HttpFilesRemote:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _file_path(file_id: str, what: str) -> str:
        """``files/{id}`` with the id as one percent-encoded path segment; an id that
        cannot be one (``.``, ``..``, a ``/``, a NUL: an old ledger may hold what a server
        once handed out) is ``PermanentError`` and no request is sent."""
        try:
            check_file_id(file_id)
        except ValueError as exc:
            raise PermanentError(f"{what}: {exc}; no request sent") from None
        return "files/" + quote(file_id, safe="")

    def _send_upload(
        self, request: httpx.Request, reader: _SizedReader, filename: str
    ) -> httpx.Response:
        """Send an upload once (``Transport.send_creating``); a file that changed while it
        was sent is retryable (the body was cut short), a 404 means a wrong base URL."""
        what = f"upload of {filename}"
        try:
            return self.transport.send_creating(
                request,
                what=what,
                sent_all=lambda: reader.sent_all,
                deadline=self.settings.upload_deadline(reader.size),
            )
        except FileChangedError as exc:
            raise RetryableError(f"{what}: the file changed while it was sent ({exc})") from exc
        except NotFoundError as exc:  # POST /files missing: the base URL is wrong
            raise WrongEndpointError(
                f"{what}: {self.transport.base_url}files answered 404 (not found); is the "
                "base URL right? It usually ends in /v1",
                status=404,
            ) from exc


_Page = tuple[list[RemoteFile], bool]


def _read_page(page: dict[str, Any], what: str) -> _Page:
    """The files of one listing page and its ``has_more``; ``ProtocolError`` naming the
    first entry that is not a valid file (the whole page counts as not received)."""
    data = page.get("data")
    if type(data) is not list:
        raise ProtocolError(f"{what}: the answer has no 'data' list")
    has_more = page.get("has_more")
    if has_more is not None and type(has_more) is not bool:
        raise ProtocolError(f"{what}: 'has_more' is not true or false")
    from_json = RemoteFile.from_json
    try:
        return [from_json(item) for item in data], bool(has_more)
    except ValueError:
        pass
    for number, item in enumerate(data, start=1):  # only to say which entry is bad
        try:
            from_json(item)
        except ValueError as exc:
            raise ProtocolError(f"{what}: entry {number}: {exc}") from None
    raise AssertionError("unreachable: an entry failed once")


def _refuse_announced_excess(response: httpx.Response, expected: int, what: str) -> None:
    """A download whose Content-Length (of an unencoded body) already says it is larger
    than the file is refused before a byte is read."""
    length = response.headers.get("content-length", "")
    if response.headers.get("content-encoding") or not length.isdigit() or len(length) > 18:
        return
    if int(length) > expected:
        raise PermanentError(
            f"{what}: the server announces {int(length)} bytes but the file has {expected}; "
            "not downloaded"
        )
