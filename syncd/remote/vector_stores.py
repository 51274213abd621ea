"""The Vector Stores calls syncd needs, and their contract.

A remote that can also keep vector stores implements ``SupportsVectorStores``:
``vector_stores()`` returns a ``VectorStoresApi``. Only ``syncd.remote`` knows HTTP;
``syncd.sync.vectors`` drives this interface.

Contract for every implementation (errors as in ``syncd.remote.protocol``: the
``RemoteError`` subclass is the retry verdict):

- A store file's id is the file's id, so a store holds a file at most once. Attaching
  (``attach``, ``attach_batch``) may therefore be retried freely: a repeated attach
  answers the attachment that is already there, and a repeated batch attaches nothing
  twice. ``update_attributes`` sets the whole set and may be retried too.
- ``create_store`` is the one call that makes something new each time: a lost answer
  raises ``AmbiguousError`` and is never retried blind. The caller puts a nonce in the
  store's metadata and, after a lost answer, finds the store by that nonce
  (``list_stores``), never by its name.
- ``detach`` of a file that is not (or no longer) in the store, or of a store that is
  gone, returns normally (detaching is idempotent). The File itself is not deleted.
- ``delete_store`` of a store that is already gone returns normally. syncd only ever
  deletes a store it provably created twice (the same intent's nonce, after a lost
  answer), never one it was given or found by name.
- ``retrieve_store`` raises ``NotFoundError`` for a store that does not exist (or no
  longer does); ``attach``/``attach_batch`` raise ``VectorStoreGoneError`` when the
  store is missing and plain ``NotFoundError`` when a file is.
- Listings (``list_stores``, ``list_files``, ``list_batch_files``) yield every item,
  following ``after`` until ``has_more`` is false, and raise ``PermanentError`` if a
  server repeats a page instead of looping for ever.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from syncd.errors import VectorStoreGoneError
from syncd.vector_api import (
    AttachRequest,
    AttributeValue,
    FileBatch,
    StoreFile,
    VectorStore,
)

__all__ = ["SupportsVectorStores", "VectorStoreGoneError", "VectorStoresApi"]


class VectorStoresApi(Protocol):
    """What syncd needs from the Vector Stores API (see the module docstring)."""

    def create_store(self, name: str, metadata: Mapping[str, str]) -> VectorStore: ...

    def retrieve_store(self, store_id: str) -> VectorStore: ...

    def list_stores(self) -> Iterator[VectorStore]: ...

    def delete_store(self, store_id: str) -> None: ...

    def attach(self, store_id: str, request: AttachRequest) -> StoreFile: ...

    def attach_batch(self, store_id: str, requests: Sequence[AttachRequest]) -> FileBatch: ...

    def retrieve_batch(self, store_id: str, batch_id: str) -> FileBatch: ...

    def list_batch_files(
        self, store_id: str, batch_id: str, status: str | None = None
    ) -> Iterator[StoreFile]: ...

    def retrieve_file(self, store_id: str, file_id: str) -> StoreFile: ...

    def list_files(self, store_id: str, status: str | None = None) -> Iterator[StoreFile]: ...

    def update_attributes(
        self, store_id: str, file_id: str, attributes: Mapping[str, AttributeValue]
    ) -> StoreFile: ...

    def detach(self, store_id: str, file_id: str) -> None: ...


@runtime_checkable
class SupportsVectorStores(Protocol):
    """A remote that can also keep vector stores."""

    def vector_stores(self) -> VectorStoresApi: ...
