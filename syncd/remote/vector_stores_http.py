"""The Vector Stores API over HTTP: ``HttpVectorStores`` shares a ``HttpFilesRemote``'s
transport (its connection pool, ``RetryGate`` and retry policy).

What to send for each call and what the answer means; the contract is
``syncd.remote.vector_stores``'s. Every call but ``create_store`` is retried under the
policy (a store holds a file once, so a repeated attach changes nothing);
``create_store`` goes through ``Transport.send_creating``, so a lost answer is
``AmbiguousError``. Lists ask for pages of 100, the published maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from syncd.errors import (
    AmbiguousError,
    NotFoundError,
    PermanentError,
    ProtocolError,
    VectorStoreGoneError,
)
from syncd.remote.transport import Transport
from syncd.vector_api import (
    LIST_LIMIT_MAX,
    AttachRequest,
    AttributeValue,
    FileBatch,
    StoreFile,
    VectorStore,
)

# A listing that pages on and on is a broken server: 100,000 pages of 100 is ten
# million store files, far more than a folder syncd mirrors.
MAX_PAGES = 100_000

T = TypeVar("T")


def _quoted(value: str) -> str:
    return quote(value, safe="")


def _parsed(build: Callable[[Any], T], data: Any, *, ambiguous: bool = False) -> T:
    """``build(data)``; a malformed answer (a missing id, a wrong type) is a
    ``ProtocolError`` -- or, for a request that creates something, ``AmbiguousError``."""
    try:
        return build(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        message = f"the server's answer is not what the API promises ({exc})"
        if ambiguous:
            raise AmbiguousError(f"{message}; it may have made it") from exc
        raise ProtocolError(message) from exc


class HttpVectorStores:
    """``VectorStoresApi`` over a ``Transport`` (see the module docstring)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    # -- stores ----------------------------------------------------------------------------

    def create_store(self, name: str, metadata: Mapping[str, str]) -> VectorStore:
        what = f"create vector store {name!r}"

        def attempt() -> VectorStore:
            request = self.transport.build(
                "POST", "vector_stores", json={"name": name, "metadata": dict(metadata)}
            )
            response = self.transport.send_creating(
                request,
                what=what,
                sent_all=lambda: True,
                deadline=self.transport.settings.answer_deadline,
            )
            body = self.transport.json_object(response, what)
            return _parsed(VectorStore.from_json, body, ambiguous=True)

        return self.transport.retry(what, attempt)

    def retrieve_store(self, store_id: str) -> VectorStore:
        what = f"retrieve vector store {store_id}"
        return _parsed(VectorStore.from_json, self._call("GET", self._store(store_id), what))

    def list_stores(self) -> Iterator[VectorStore]:
        for item in self._pages("vector_stores", {}, "list vector stores"):
            yield _parsed(VectorStore.from_json, item)

    def delete_store(self, store_id: str) -> None:
        what = f"delete vector store {store_id}"
        try:
            self._call("DELETE", self._store(store_id), what)
        except NotFoundError:
            return

    # -- attaching -------------------------------------------------------------------------

    def attach(self, store_id: str, request: AttachRequest) -> StoreFile:
        what = f"attach {request.file_id} to {store_id}"
        body = self._gone_checked(
            store_id,
            lambda: self._call("POST", self._store(store_id) + "/files", what, request.to_json()),
        )
        return _parsed(StoreFile.from_json, body)

    def attach_batch(self, store_id: str, requests: Sequence[AttachRequest]) -> FileBatch:
        what = f"attach a batch of {len(requests)} files to {store_id}"
        payload = {"files": [r.to_json() for r in requests]}
        body = self._gone_checked(
            store_id,
            lambda: self._call("POST", self._store(store_id) + "/file_batches", what, payload),
        )
        return _parsed(FileBatch.from_json, body)

    def _gone_checked(self, store_id: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``call()``; a 404 becomes ``VectorStoreGoneError`` when the store is missing."""
        try:
            return call()
        except NotFoundError as exc:
            try:
                self.retrieve_store(store_id)
            except NotFoundError:
                raise VectorStoreGoneError(
                    f"vector store {store_id} does not exist", status=404
                ) from exc
            raise

    def retrieve_batch(self, store_id: str, batch_id: str) -> FileBatch:
        path = f"{self._store(store_id)}/file_batches/{_quoted(batch_id)}"
        return _parsed(FileBatch.from_json, self._call("GET", path, f"retrieve batch {batch_id}"))

    def list_batch_files(
        self, store_id: str, batch_id: str, status: str | None = None
    ) -> Iterator[StoreFile]:
        path = f"{self._store(store_id)}/file_batches/{_quoted(batch_id)}/files"
        params = {"filter": status} if status else {}
        for item in self._pages(path, params, f"list the files of batch {batch_id}"):
            yield _parsed(StoreFile.from_json, item)

    # -- store files -----------------------------------------------------------------------

    def retrieve_file(self, store_id: str, file_id: str) -> StoreFile:
        what = f"retrieve {file_id} in {store_id}"
        return _parsed(StoreFile.from_json, self._call("GET", self._file(store_id, file_id), what))

    def list_files(self, store_id: str, status: str | None = None) -> Iterator[StoreFile]:
        params = {"filter": status} if status else {}
        path = self._store(store_id) + "/files"
        for item in self._pages(path, params, f"list the files of {store_id}"):
            yield _parsed(StoreFile.from_json, item)

    def update_attributes(
        self, store_id: str, file_id: str, attributes: Mapping[str, AttributeValue]
    ) -> StoreFile:
        what = f"update the attributes of {file_id} in {store_id}"
        body = self._call(
            "POST", self._file(store_id, file_id), what, {"attributes": dict(attributes)}
        )
        return _parsed(StoreFile.from_json, body)

    def detach(self, store_id: str, file_id: str) -> None:
        """DELETE /vector_stores/{id}/files/{file_id}; not there (or no store) is done."""
        what = f"detach {file_id} from {store_id}"
        try:
            body = self._call("DELETE", self._file(store_id, file_id), what)
        except NotFoundError:
            return
        if body.get("deleted") is False:
            raise PermanentError(f"{what}: the server did not detach it")

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _store(store_id: str) -> str:
        return "vector_stores/" + _quoted(store_id)

    def _file(self, store_id: str, file_id: str) -> str:
        return f"{self._store(store_id)}/files/{_quoted(file_id)}"

    def _call(
        self, method: str, path: str, what: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One request under the retry policy; the answer's JSON object."""

        def attempt() -> dict[str, Any]:
            request = self.transport.build(method, path, json=body)
            return self.transport.json_object(self.transport.send(request, what=what), what)

        return self.transport.retry(what, attempt)

    def _pages(self, path: str, params: dict[str, str], what: str) -> Iterator[dict[str, Any]]:
        query: dict[str, str | int] = {"limit": LIST_LIMIT_MAX, **params}
        cursors: set[str] = set()
        for _ in range(MAX_PAGES):
            page_query = dict(query)

            def fetch(page_query: dict[str, str | int] = page_query) -> dict[str, Any]:
                request = self.transport.build("GET", path, params=page_query)
                return self.transport.json_object(self.transport.send(request, what=what), what)

            page = self.transport.retry(what, fetch)
            data = page.get("data")
            if not isinstance(data, list):
                raise PermanentError(f"{what}: the answer has no 'data' list")
            for number, item in enumerate(data, start=1):
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    raise ProtocolError(
                        f"{what}: entry {number} of a page is not an object with an id"
                    )
                yield item
            if not page.get("has_more"):
                return
            if not data:
                raise PermanentError(f"{what}: has_more is true but the page is empty")
            cursor = str(data[-1]["id"])
            if cursor in cursors:
                raise PermanentError(f"{what}: the server repeated the page after {cursor}")
            cursors.add(cursor)
            query["after"] = cursor
        raise ProtocolError(f"{what}: more than {MAX_PAGES} pages; the listing does not end")
