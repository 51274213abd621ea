"""The narrow interface syncd needs from a Files API, and its contract.

Everything above this module (planner, executor, daemon, restore) talks to a
``FilesRemote`` and nothing else; only ``syncd.remote.http`` knows about httpx.

Contract for every implementation:

- Methods raise ``syncd.errors.RemoteError`` subclasses for anything the remote side
  did; the subclass is the retry verdict (see ``syncd/errors.py``). ``upload`` may also
  raise ``OSError`` when the local file cannot be read: that is a local, per-file error.
- ``upload`` streams the file from disk (memory does not grow with its size) and sends
  ``filename`` as given: the path relative to the mirrored folder with ``/`` separators.
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
add parts, complete, cancel). ``syncd.remote.multipart`` drives it. Its contract:

- ``create_upload`` and ``add_part`` may be retried freely: a lost answer leaves at
  worst an orphan upload or part, which the server drops (expiry, or parts not named in
  ``complete``). Neither creates a File.
- ``complete_upload`` creates the File, so it follows ``upload``'s rule: a lost answer
  is ``AmbiguousError`` (reconcile by listing; there is no GET /uploads/{id}).
- ``add_part`` and ``complete_upload`` raise ``UploadGoneError`` when the server no
  longer has the upload pending (expired, cancelled, unknown): start a new one.
- ``cancel_upload`` of an upload that is already finished or gone returns normally.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from syncd.errors import PermanentError

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
JSONL_PURPOSES = ("fine-tune", "batch", "evals")
MAX_FILE_BYTES = 512 * 1000 * 1000  # the API's "512 MB"
# The Uploads API: purposes it accepts, its largest file ("8 GB") and part ("64 MB",
# which the official SDK and servers take as 64 MiB).
UPLOADS_API_PURPOSES = ("assistants", "batch", "fine-tune", "vision")
MAX_UPLOAD_BYTES = 8 * 1000 * 1000 * 1000
MAX_PART_BYTES = 64 * 1024 * 1024
EXPIRES_MIN_SECONDS = 3600
EXPIRES_MAX_SECONDS = 2_592_000


@dataclass(frozen=True)
class RemoteFile:
    """One file as the Files API describes it (the ``OpenAIFile`` schema)."""

    id: str
    filename: str
    bytes: int
    created_at: int
    purpose: str
    status: str = "processed"
    expires_at: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RemoteFile:
        return cls(
            id=str(data["id"]),
            filename=str(data.get("filename", "")),
            bytes=int(data.get("bytes") or 0),
            created_at=int(data.get("created_at") or 0),
            purpose=str(data.get("purpose", "")),
            status=str(data.get("status") or "processed"),
            expires_at=int(data["expires_at"]) if data.get("expires_at") is not None else None,
        )


class FilesRemote(Protocol):
    """What syncd needs from a Files API. See the module docstring for the contract."""

    def upload(
        self,
        path: Path,
        filename: str,
        purpose: str,
        expires_after_seconds: int | None = None,
    ) -> RemoteFile: ...

    def list_files(
        self, purpose: str | None = None, order: str = "desc"
    ) -> Iterator[RemoteFile]: ...

    def retrieve(self, file_id: str) -> RemoteFile: ...

    def download(self, file_id: str, out: BinaryIO, expected_bytes: int | None = None) -> int: ...

    def delete(self, file_id: str) -> None: ...

    def close(self) -> None: ...


class UploadGoneError(PermanentError):
    """The upload is no longer pending on the server (expired, cancelled, unknown)."""


@dataclass(frozen=True)
class RemoteUpload:
    """A pending upload as ``POST /uploads`` answers it (the ``Upload`` schema, in part)."""

    id: str
    expires_at: int
    status: str = "pending"


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
