"""The Uploads API over HTTP: ``HttpUploadsApi`` shares a ``HttpFilesRemote``'s transport.

The four calls (``POST /uploads``, ``/uploads/{id}/parts``, ``/complete``, ``/cancel``)
share the remote's connection pool, its ``RetryGate`` and its retry policy, and follow
the error rules of ``syncd.remote.protocol``: creates and parts are retried freely (a
lost answer leaves at worst an orphan the server drops), a lost ``complete`` answer is
``AmbiguousError`` (the File may exist: reconcile by listing), and an upload the server
no longer has pending is ``UploadGoneError``. ``syncd.sync.multipart`` drives it.

Each part streams from disk through ``PartBody`` (a window of the file, read and sent
1 MiB at a time), so memory does not grow with part or file size. Answers are checked
as in ``syncd.remote.files_http``: an upload or part id must be one safe path segment,
``expires_at`` an integer; anything else is ``ProtocolError`` (for ``complete``, whose
answer carries the File, ``AmbiguousError``). Deadlines: ``syncd.remote.bounds``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import quote

from syncd.api import MAX_TIMESTAMP, RemoteFile, RemoteUpload, check_file_id
from syncd.errors import (
    AmbiguousError,
    FatalError,
    FileChangedError,
    NotFoundError,
    PermanentError,
    ProtocolError,
    RemoteError,
    RetryableError,
    UploadGoneError,
)
from syncd.remote.bounds import parse_json
from syncd.remote.transport import Transport

PART_CHUNK = 1024 * 1024  # bytes per read and per send while a part streams
# How a server says an upload is not pending (the local server's words, and the API's).
_NOT_PENDING = re.compile(r"expired|cancell?ed|not 'pending'|no such upload", re.IGNORECASE)
_COMPLETED = re.compile(r"'completed'|already completed", re.IGNORECASE)


class PartBody:
    """The ``multipart/form-data`` body of one part: field ``data`` holding ``length``
    bytes of ``file`` from ``offset``, streamed in ``PART_CHUNK`` (1 MiB) reads.

    Built by hand rather than with httpx's ``files=`` so that chunks are 1 MiB instead
    of 64 KiB (16x fewer trips through httpx and h11 per part) and the exact
    ``Content-Length`` is known up front. A file that turns out too short raises
    ``FileChangedError`` before the closing boundary, so the server never takes a short part.
    """

    def __init__(
        self,
        file: BinaryIO,
        offset: int,
        length: int,
        on_sending: Callable[[], None] | None = None,
    ) -> None:
        self._file = file
        self._on_sending = on_sending
        self._offset = offset
        self.length = length
        self.boundary = secrets.token_hex(16)
        self._head = (
            f"--{self.boundary}\r\n"
            'Content-Disposition: form-data; name="data"; filename="blob"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()

    def headers(self) -> dict[str, str]:
        size = len(self._head) + self.length + len(self._tail)
        return {
            "Content-Type": f"multipart/form-data; boundary={self.boundary}",
            "Content-Length": str(size),
        }

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        if self._on_sending is not None:  # the head is written, so the headers are sent
            self._on_sending()
        self._file.seek(self._offset)
        left = self.length
        while left > 0:
            chunk = self._file.read(min(PART_CHUNK, left))
            if not chunk:
                raise FileChangedError(f"ended {left} bytes early")
            left -= len(chunk)
            yield chunk
        yield self._tail


class HttpUploadsApi:
    """``UploadsApi`` over one ``Transport`` (the files remote's pool, gate and retries)."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def create_upload(
        self,
        filename: str,
        purpose: str,
        size: int,
        *,
        mime_type: str,
        expires_after_seconds: int | None = None,
    ) -> RemoteUpload:
        """POST /uploads. Retried like any call: an orphan upload only expires."""
        body: dict[str, Any] = {
            "filename": filename,
            "purpose": purpose,
            "bytes": size,
            "mime_type": mime_type,
        }
        if expires_after_seconds is not None:
            body["expires_after"] = {"anchor": "created_at", "seconds": expires_after_seconds}
        what = f"create upload of {filename}"

        def attempt() -> RemoteUpload:
            request = self._transport.build("POST", "uploads", json=body)
            try:
                response = self._transport.send(request, what=what)
            except NotFoundError as exc:
                raise PermanentError(
                    f"{what}: the server has no Uploads API (POST /uploads not found)",
                    status=404,
                ) from exc
            return _upload(self._transport.json_object(response, what), what)

        return self._transport.retry(what, attempt)

    def add_part(
        self,
        upload_id: str,
        path: Path,
        offset: int,
        length: int,
        on_sending: Callable[[], None] | None = None,
    ) -> str:
        """POST /uploads/{id}/parts with bytes [offset, offset+length) of ``path``.

        A lost answer is simply retried (an unlisted part is dropped at ``complete``).
        Raises ``RetryableError`` (not retried here) if the file is too short,
        ``UploadGoneError`` if the upload is no longer pending, ``OSError`` if ``path``
        cannot be read.
        """
        what = f"part at byte {offset} of upload {upload_id}"

        def attempt() -> str:
            with open(path, "rb", buffering=0) as file:
                body = PartBody(cast(BinaryIO, file), offset, length, on_sending)
                request = self._transport.build(
                    "POST",
                    self._upload_path(upload_id, "parts"),
                    content=iter(body),
                    headers=body.headers(),
                )
                response = self._transport.send(
                    request, what=what, deadline=self._transport.settings.upload_deadline(length)
                )
            data = self._transport.json_object(response, what)
            try:
                return check_file_id(data.get("id"))
            except ValueError as exc:
                raise ProtocolError(f"{what}: the answer is not an upload part ({exc})") from None

        try:
            return self._transport.retry(what, attempt)
        except FileChangedError as exc:
            raise RetryableError(f"{what}: the file changed while it was sent ({exc})") from exc
        except RemoteError as exc:
            raise _gone_or(exc, upload_id) from exc

    def complete_upload(self, upload_id: str, part_ids: list[str], md5: str | None) -> RemoteFile:
        """POST /uploads/{id}/complete: the File is made here, so a lost answer (transport
        error after sending, 5xx, a body without the file) is ``AmbiguousError``."""
        body: dict[str, Any] = {"part_ids": part_ids}
        if md5 is not None:
            body["md5"] = md5
        what = f"complete upload {upload_id}"

        def attempt() -> RemoteFile:
            request = self._transport.build(
                "POST", self._upload_path(upload_id, "complete"), json=body
            )
            response = self._transport.send_creating(
                request, what=what, sent_all=lambda: True, deadline=self._transport.settings.timeout
            )
            try:
                answer = parse_json(response.content, what)
                return RemoteFile.from_json(
                    answer.get("file") if isinstance(answer, dict) else None
                )
            except (ValueError, ProtocolError) as exc:
                raise AmbiguousError(
                    f"{what}: the server answered {response.status_code} without a valid "
                    f"file ({exc}); it may have made it",
                    status=response.status_code,
                ) from exc

        try:
            return self._transport.retry(what, attempt)
        except PermanentError as exc:
            if _COMPLETED.search(exc.message):  # an earlier complete went through
                raise AmbiguousError(f"{what}: {exc.message}", status=exc.status) from exc
            raise _gone_or(exc, upload_id) from exc

    def cancel_upload(self, upload_id: str) -> None:
        """POST /uploads/{id}/cancel; an upload already finished or unknown is fine."""
        what = f"cancel upload {upload_id}"

        def attempt() -> None:
            request = self._transport.build("POST", self._upload_path(upload_id, "cancel"))
            try:
                self._transport.send(request, what=what)
            except FatalError:
                raise
            except PermanentError:  # 404 or "not pending": nothing left to cancel
                return

        self._transport.retry(what, attempt)

    @staticmethod
    def _upload_path(upload_id: str, action: str) -> str:
        try:
            check_file_id(upload_id)
        except ValueError as exc:
            raise PermanentError(
                f"upload {upload_id!r}: {exc}; no request sent".replace("file id", "upload id")
            ) from None
        return f"uploads/{quote(upload_id, safe='')}/{action}"


def _upload(data: dict[str, Any], what: str) -> RemoteUpload:
    """The Upload object of a ``POST /uploads`` answer; ``ProtocolError`` if it is not one."""
    expires_at = data.get("expires_at")
    status = data.get("status")
    try:
        upload_id = check_file_id(data.get("id"))
    except ValueError as exc:
        raise ProtocolError(f"{what}: the answer is not an Upload object ({exc})") from None
    if type(expires_at) is not int or not 0 <= expires_at <= MAX_TIMESTAMP:
        raise ProtocolError(f"{what}: the answer's 'expires_at' is not a time")
    if status is not None and type(status) is not str:
        raise ProtocolError(f"{what}: the answer's 'status' is not a string")
    return RemoteUpload(id=upload_id, expires_at=expires_at, status=status or "pending")


def _gone_or(error: RemoteError, upload_id: str) -> RemoteError:
    """``UploadGoneError`` when ``error`` says the upload is no longer pending."""
    if isinstance(error, UploadGoneError):
        return error
    if isinstance(error, NotFoundError) or (
        error.status == 400 and _NOT_PENDING.search(error.message)
    ):
        return UploadGoneError(
            f"upload {upload_id} is no longer pending ({error.message})", status=error.status
        )
    return error
