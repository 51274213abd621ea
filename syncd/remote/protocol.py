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
  byte count differs from the file's ``bytes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
JSONL_PURPOSES = ("fine-tune", "batch", "evals")
MAX_FILE_BYTES = 512 * 1000 * 1000  # the API's "512 MB"
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

    def download(self, file_id: str, out: BinaryIO) -> int: ...

    def delete(self, file_id: str) -> None: ...

    def close(self) -> None: ...
