"""``HttpFilesRemote``: the Files API over HTTP (``FilesRemote``, and ``uploads_api()``).

What to send for each call and what its answer means; sending itself, retrying and the
translation of errors (including when an upload is ambiguous rather than retryable)
are ``syncd.remote.transport``'s. Only ``syncd.remote`` knows about httpx.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import quote

import httpx
import structlog

from syncd.api import LIST_PAGE_LIMIT, RemoteFile
from syncd.errors import (
    AmbiguousError,
    FileChangedError,
    NotFoundError,
    PermanentError,
    RemoteError,
    RetryableError,
)
from syncd.remote.protocol import UploadsApi
from syncd.remote.retry import RetryGate, RetryPolicy
from syncd.remote.settings import RemoteSettings
from syncd.remote.transport import Transport

T = TypeVar("T")

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
        self.page_size = page_size
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

        ``size``: send exactly this many bytes (default: the file's size when opened); a
        file of another size is cut short (``RetryableError``, nothing stored). Raises
        ``AmbiguousError`` when the file may be stored although no usable answer came
        back (see the module docstring), ``OSError`` if ``path`` cannot be read.
        """
        fields = {"purpose": purpose}
        if expires_after_seconds is not None:
            fields["expires_after[anchor]"] = "created_at"
            fields["expires_after[seconds]"] = str(expires_after_seconds)

        def attempt() -> RemoteFile:
            with open(path, "rb") as file:
                length = size if size is not None else os.fstat(file.fileno()).st_size
                reader = _SizedReader(file, length)
                request = self.transport.build(
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

        return self.transport.retry(f"upload {filename}", attempt)

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
                request = self.transport.build("GET", "files", params=page_params)
                try:
                    response = self.transport.send(request, what="list files")
                except NotFoundError as exc:  # GET /files missing: the base URL is wrong
                    raise PermanentError(
                        f"list files: {request.url} not found; is the base URL right?",
                        status=404,
                    ) from exc
                return self.transport.json_object(response, "list files")

            page = self.transport.retry("list files", fetch)
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
            request = self.transport.build("GET", self._file_path(file_id))
            what = f"retrieve {file_id}"
            return RemoteFile.from_json(
                self.transport.json_object(self.transport.send(request, what=what), what)
            )

        return self.transport.retry(f"retrieve {file_id}", attempt)

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
            request = self.transport.build(
                "GET",
                self._file_path(file_id) + "/content",
                headers={"Accept": "application/binary"},
            )
            response = self.transport.send(request, what=what, stream=True)
            try:
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    written += len(chunk)
            except httpx.TransportError as exc:
                error = self.transport.transport_error(exc, what, ambiguous=False)
                if written and not rewind():
                    raise _Unrepeatable(error) from exc
                raise error from exc
            finally:
                response.close()
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

        def attempt() -> None:
            request = self.transport.build("DELETE", self._file_path(file_id))
            try:
                body = self.transport.json_object(
                    self.transport.send(request, what=f"delete {file_id}"), "delete"
                )
            except NotFoundError:
                return
            if body.get("deleted") is False:
                raise PermanentError(f"delete {file_id}: the server did not delete it")

        self.transport.retry(f"delete {file_id}", attempt)

    def date_samples(self) -> list[tuple[float, float, int]]:
        """What the answers' ``Date`` headers said (``SupportsServerClock``)."""
        return self.transport.date_samples()

    def request_time_limit(self) -> float:
        """How long a request may go without progress before it is given up (the
        settings' read/write timeout; ``SupportsServerClock``)."""
        return self.settings.timeout

    def uploads_api(self) -> UploadsApi:
        """The Uploads API over this remote's connections, gate and retry policy."""
        from syncd.remote.uploads_http import HttpUploadsApi  # it builds on this module

        return HttpUploadsApi(self.transport)

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
    def _file_path(file_id: str) -> str:
        return "files/" + quote(file_id, safe="")

    def _send_upload(
        self, request: httpx.Request, reader: _SizedReader, filename: str
    ) -> httpx.Response:
        """Send an upload once (``Transport.send_creating``); a file that changed while it
        was sent is retryable (the body was cut short), a 404 means a wrong base URL."""
        what = f"upload of {filename}"
        try:
            return self.transport.send_creating(
                request, what=what, sent_all=lambda: reader.sent_all
            )
        except FileChangedError as exc:
            raise RetryableError(f"{what}: the file changed while it was sent ({exc})") from exc
        except NotFoundError as exc:  # POST /files missing: the base URL is wrong
            raise PermanentError(
                f"{what}: {self.transport.base_url}files not found; is the base URL right?",
                status=404,
            ) from exc
