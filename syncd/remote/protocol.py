"""The narrow interface syncd needs from a Files API, and its contract.

Everything above this module (planner, executor, daemon, restore) talks to a
``FilesRemote`` and nothing else; only ``syncd.remote.files_http`` knows about httpx.

Contract for every implementation:

- Methods raise ``syncd.errors.RemoteError`` subclasses for anything the remote side
  did; the subclass is the retry verdict (see ``syncd/errors.py``). ``upload`` may also
  raise ``OSError`` when the local file cannot be read: that is a local, per-file error.
- ``upload`` streams the file from disk (memory does not grow with its size) and sends
  ``filename`` as given: the path relative to the mirrored folder with ``/`` separators.
  Given ``size`` (the size the caller recorded for the content it means to send), it
  sends exactly that many bytes: a file that has another size by the time it is read
  is cut short before the body ends, so nothing is stored, and the upload raises
  ``RetryableError`` -- what the server stores always has the size the caller wrote in
  its intent.
  If the request may have reached the server but no answer came back it raises
  ``AmbiguousError`` instead of retrying, because the API has no idempotency key: a
  blind retry could store a second copy. The caller reconciles (list + match).
- ``list_files`` yields every file, following ``after`` until ``has_more`` is false.
- ``delete`` of a file that is already gone returns normally (deleting is idempotent).
- ``download`` streams the content into ``out`` and raises ``RemoteError`` if the
  byte count differs from the file's ``bytes``; given ``expected_bytes`` (the caller
  knows the size, e.g. from a listing or the ledger) it checks against that and skips
  the ``retrieve`` call it would otherwise make to learn the size.

Large files (the Uploads API). A remote that can also take files in parts implements
``SupportsUploadsApi``: ``uploads_api()`` returns an ``UploadsApi`` (create an upload,
add parts, complete, cancel). ``syncd.sync.multipart`` drives it. Its contract:

- ``create_upload`` and ``add_part`` may be retried freely: a lost answer leaves at
  worst an orphan upload or part, which the server drops (expiry, or parts not named in
  ``complete``). Neither creates a File.
- ``complete_upload`` creates the File, so it follows ``upload``'s rule: a lost answer
  is ``AmbiguousError`` (reconcile by listing; there is no GET /uploads/{id}).
- ``add_part`` and ``complete_upload`` raise ``UploadGoneError`` when the server no
  longer has the upload pending (expired, cancelled, unknown): start a new one.
- ``cancel_upload`` of an upload that is already finished or gone returns normally.

The server's clock (optional). A remote that implements ``SupportsServerClock`` reports
what its answers said of the server's clock -- ``date_samples()``: the last few
``(sent, received, date)`` triples, local unix times around an answer and the whole
seconds of its ``Date`` header -- and ``request_time_limit()``, how long a request may
run without progress before the client gives up (``syncd.sync.server_clock`` and the
ownership windows use both).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from syncd.api import RemoteFile, RemoteUpload


class FilesRemote(Protocol):
    """What syncd needs from a Files API. See the module docstring for the contract."""

    def upload(
        self,
        path: Path,
        filename: str,
        purpose: str,
        expires_after_seconds: int | None = None,
        *,
        size: int | None = None,
    ) -> RemoteFile: ...

    def list_files(
        self, purpose: str | None = None, order: str = "desc"
    ) -> Iterator[RemoteFile]: ...

    def retrieve(self, file_id: str) -> RemoteFile: ...

    def download(self, file_id: str, out: BinaryIO, expected_bytes: int | None = None) -> int: ...

    def delete(self, file_id: str) -> None: ...

    def close(self) -> None: ...


class UploadsApi(Protocol):
    """The four Uploads API calls; see the module docstring for the contract."""

    def create_upload(
        self,
        filename: str,
        purpose: str,
        size: int,
        *,
        mime_type: str,
        expires_after_seconds: int | None = None,
    ) -> RemoteUpload: ...

    def add_part(self, upload_id: str, path: Path, offset: int, length: int) -> str: ...

    def complete_upload(
        self, upload_id: str, part_ids: list[str], md5: str | None
    ) -> RemoteFile: ...

    def cancel_upload(self, upload_id: str) -> None: ...


@runtime_checkable
class SupportsUploadsApi(Protocol):
    """A remote that can also send large files through the Uploads API."""

    def uploads_api(self) -> UploadsApi: ...


@runtime_checkable
class SupportsServerClock(Protocol):
    """A remote that reports its answers' ``Date`` and its requests' time limit."""

    def date_samples(self) -> list[tuple[float, float, int]]: ...

    def request_time_limit(self) -> float: ...
