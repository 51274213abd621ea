"""``DetachFirstRemote``: a ``FilesRemote`` whose ``delete`` detaches the file from every
vector store first.

Deleting a File is documented to remove it from every vector store, but stores are
reported to list deleted files for a while. So every File the engine deletes -- a path
deleted locally, a replaced version, a duplicate found after a lost answer, a delete a
crash left open -- is detached first (``VectorSync.detach_everywhere``: one intent per
attachment the ledger records), then deleted. The engine hands this remote to its
transfers and its reconciler when the mirror keeps a store; all else is ``inner``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from syncd.api import RemoteFile
from syncd.remote.protocol import FilesRemote


class DetachFirstRemote:
    """``inner`` with ``delete`` = ``detach(file_id)``, then ``inner.delete(file_id)``
    (a failed detach raises, so the delete waits and its intent stays open)."""

    def __init__(self, inner: FilesRemote, detach: Callable[[str], None]) -> None:
        self.inner = inner
        self.detach = detach

    def upload(
        self,
        path: Path,
        filename: str,
        purpose: str,
        expires_after_seconds: int | None = None,
        *,
        size: int | None = None,
    ) -> RemoteFile:
        return self.inner.upload(path, filename, purpose, expires_after_seconds, size=size)

    def list_files(self, purpose: str | None = None, order: str = "desc") -> Iterator[RemoteFile]:
        return self.inner.list_files(purpose, order)

    def retrieve(self, file_id: str) -> RemoteFile:
        return self.inner.retrieve(file_id)

    def download(self, file_id: str, out: BinaryIO, expected_bytes: int | None = None) -> int:
        return self.inner.download(file_id, out, expected_bytes)

    def delete(self, file_id: str) -> None:
        self.detach(file_id)
        self.inner.delete(file_id)

    def close(self) -> None:
        self.inner.close()
