"""The Vector Stores API over ASGI: stores, their files, file batches, faithful to the spec.

Routes (all under ``/v1``; state in ``syncd.server.vector_store_db``)::

    POST   /vector_stores                                 create (name, metadata,
                                                          expires_after, file_ids <= 500)
    GET    /vector_stores                                 list (limit, order, after, before)
    GET    /vector_stores/{id}                            retrieve
    DELETE /vector_stores/{id}                            delete
    POST   /vector_stores/{id}/files                      attach one file
    GET    /vector_stores/{id}/files                      list (+ filter by status)
    GET    /vector_stores/{id}/files/{file_id}            retrieve
    POST   /vector_stores/{id}/files/{file_id}            update attributes
    DELETE /vector_stores/{id}/files/{file_id}            detach (the File stays)
    POST   /vector_stores/{id}/file_batches               file_ids (1-2000) or files (1-2000)
    GET    /vector_stores/{id}/file_batches/{batch_id}    retrieve
    POST   /vector_stores/{id}/file_batches/{batch_id}/cancel
    GET    /vector_stores/{id}/file_batches/{batch_id}/files

As strict as the published limits: ``limit`` 1-100 (default 20), ``order`` asc/desc,
``filter`` one of the four statuses; attributes at most 16 pairs, keys up to 64
characters, values strings up to 512 characters, booleans or numbers; store metadata
the same with string values; ``chunking_strategy`` ``auto`` or ``static`` (100-4096
tokens, overlap from 0 to half); ``file_ids`` and ``files`` not both; unknown keys are
refused. Choices where the spec is silent (also in docs/vector-stores.md):

- a file attached twice keeps its first attachment (the same object is answered: a
  store file's id is the file's id, so a store holds a file once);
- an unknown store is a 404 ``No vector store found with id '...'.``; an unknown (or
  deleted) file a 404 naming it, and nothing of the request is carried out; a file whose
  purpose is not ``assistants`` or ``user_data`` a 400; writing to an expired store a 400;
- a store without a name is named ``""``; ``description`` is accepted and not kept;
- cancelling a batch that is no longer in progress answers it as it is;
- ``last_active_at`` moves on every write (attach, update, detach), which is what an
  ``expires_after`` counts from.
"""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncd.server.envelope import ApiError, invalid_request
from syncd.server.jsonbody import read_json_object
from syncd.server.state import ServerState, server_state
from syncd.server.store import FileRecord, new_id
from syncd.server.validation import DIGITS
from syncd.server.vector_store_db import AttachSpec, StoreRecord
from syncd.vector_api import (
    ATTACHABLE_PURPOSES,
    FILE_STATUSES,
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    MAX_BATCH_FILES,
    MAX_CREATE_FILE_IDS,
    MAX_EXPIRY_DAYS,
    MIN_EXPIRY_DAYS,
    attributes_problem,
    chunking_problem,
    metadata_problem,
)

STORE_KEYS = frozenset(
    {"file_ids", "name", "description", "expires_after", "chunking_strategy", "metadata"}
)
ATTACH_KEYS = frozenset({"file_id", "attributes", "chunking_strategy"})
BATCH_KEYS = frozenset({"file_ids", "files", "attributes", "chunking_strategy"})
UPDATE_KEYS = frozenset({"attributes"})

log = structlog.get_logger(__name__)


# -- errors ----------------------------------------------------------------------------


def store_not_found(store_id: str) -> ApiError:
    return ApiError(404, f"No vector store found with id '{store_id}'.", param="vector_store_id")


def file_not_found(file_id: str) -> ApiError:
    return ApiError(404, f"No file found with id '{file_id}'.", param="file_id")


def store_file_not_found(store_id: str, file_id: str) -> ApiError:
    return ApiError(
        404,
        f"No file found with id '{file_id}' in vector store '{store_id}'.",
        param="file_id",
    )


def batch_not_found(batch_id: str) -> ApiError:
    return ApiError(404, f"No file batch found with id '{batch_id}'.", param="batch_id")


# -- request checks --------------------------------------------------------------------


def _list_params(request: Request, *, with_filter: bool) -> dict[str, Any]:
    params = request.query_params
    raw = params.get("limit")
    limit = LIST_LIMIT_DEFAULT
    if raw is not None:
        limit = int(raw) if DIGITS.fullmatch(raw) else 0
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise invalid_request(
                f"Invalid 'limit': {raw!r}. Expected an integer between 1 and {LIST_LIMIT_MAX}.",
                param="limit",
                code="invalid_value",
            )
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid_request(
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
    found: dict[str, Any] = {
        "limit": limit,
        "order": order,
        "after": params.get("after") or None,
        "before": params.get("before") or None,
    }
    if with_filter:
        status = params.get("filter") or None
        if status is not None and status not in FILE_STATUSES:
            choices = ", ".join(f"'{s}'" for s in FILE_STATUSES)
            raise invalid_request(
                f"Invalid value: '{status}'. Supported values are: {choices}.",
                param="filter",
                code="invalid_value",
            )
        found["status"] = status
    return found


def _chunking(value: Any, param: str = "chunking_strategy") -> tuple[int, int] | None:
    """(max tokens, overlap) of a ``static`` strategy, None for ``auto`` or none given."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "auto" and set(value) == {"type"}:
        return None
    if kind == "static" and set(value) == {"type", "static"}:
        static = value["static"]
        if isinstance(static, dict) and set(static) == {
            "max_chunk_size_tokens",
            "chunk_overlap_tokens",
        }:
            size, overlap = static["max_chunk_size_tokens"], static["chunk_overlap_tokens"]
            problem = chunking_problem(size, overlap)
            if problem is None:
                return int(size), int(overlap)
            problem = problem.replace("max_tokens", "max_chunk_size_tokens").replace(
                "overlap", "chunk_overlap_tokens", 1
            )
            raise invalid_request(f"Invalid '{param}': {problem}.", param=param)
    raise invalid_request(
        f'Invalid \'{param}\': expected {{"type": "auto"}} or {{"type": "static", '
        '"static": {"max_chunk_size_tokens": N, "chunk_overlap_tokens": M}}.',
        param=param,
        code="invalid_value",
    )


def _attributes(value: Any, param: str = "attributes") -> dict[str, Any] | None:
    if value is None:
        return None
    problem = attributes_problem(value)
    if problem is not None:
        raise invalid_request(f"Invalid '{param}': {problem}.", param=param, code="invalid_value")
    return dict(value)


def _file_id(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid_request(
            f"Missing required parameter: '{param}'." if value is None else f"Invalid '{param}'.",
            param=param,
            code="missing_required_parameter" if value is None else "invalid_value",
        )
    return value


def _file_ids(value: Any, param: str, low: int, high: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid_request(f"Invalid '{param}': expected a list of file ids.", param=param)
    if not low <= len(value) <= high:
        raise invalid_request(
            f"Invalid '{param}': expected from {low} to {high} file ids, got {len(value)}.",
            param=param,
            code="invalid_value",
        )
    return list(dict.fromkeys(value))  # a file named twice is attached once


def _expires_days(value: Any) -> int | None:
    if value is None:
        return None
    if (
        isinstance(value, dict)
        and set(value) == {"anchor", "days"}
        and value["anchor"] == "last_active_at"
        and isinstance(value["days"], int)
        and not isinstance(value["days"], bool)
        and MIN_EXPIRY_DAYS <= value["days"] <= MAX_EXPIRY_DAYS
    ):
        return int(value["days"])
    raise invalid_request(
        'Invalid \'expires_after\': expected {"anchor": "last_active_at", "days": N} with '
        f"N from {MIN_EXPIRY_DAYS} to {MAX_EXPIRY_DAYS}.",
        param="expires_after",
        code="invalid_value",
    )


def _attachable(state: ServerState, file_id: str) -> FileRecord:
    """The live File with this id, if a vector store may take it (worker thread)."""
    record = state.store.get(file_id)
    if record is None:
        raise file_not_found(file_id)
    if record.purpose not in ATTACHABLE_PURPOSES:
        raise invalid_request(
            f"File {file_id} has purpose '{record.purpose}': only files of purpose "
            f"{' or '.join(repr(p) for p in ATTACHABLE_PURPOSES)} can be added to a vector store.",
            param="file_id",
        )
    return record


def _live_store(state: ServerState, store_id: str, *, writing: bool) -> StoreRecord:
    """The store, or its 404; writing into an expired store is a 400 (worker thread)."""
    store = state.vectors.store(store_id)
    if store is None:
        raise store_not_found(store_id)
    if writing and store.status(_now()) == "expired":
        raise invalid_request(
            f"Vector store {store_id} has expired; it can no longer be modified.",
            param="vector_store_id",
        )
    return store


def _now() -> float:
    return time.time()


async def _run(func: Any, *args: Any) -> Any:
    return await anyio.to_thread.run_sync(func, *args)


# -- stores ------------------------------------------------------------------------------


async def create_store(request: Request) -> Response:
    """POST /vector_stores."""
    state = server_state(request)
    body = await read_json_object(request, STORE_KEYS)
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise invalid_request("Invalid 'name': expected a string.", param="name")
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise invalid_request("Invalid 'description': expected a string.", param="description")
    problem = metadata_problem(body.get("metadata"))
    if problem is not None:
        raise invalid_request(f"Invalid 'metadata': {problem}.", param="metadata")
    expires = _expires_days(body.get("expires_after"))
    chunking = _chunking(body.get("chunking_strategy"))
    file_ids = body.get("file_ids")
    ids = [] if file_ids is None else _file_ids(file_ids, "file_ids", 0, MAX_CREATE_FILE_IDS)

    def create() -> dict[str, Any]:
        files = [_attachable(state, file_id) for file_id in ids]
        store = state.vectors.create_store(
            name=name or "", metadata=body.get("metadata"), expires_days=expires
        )
        if files:
            specs = [AttachSpec(f, None, chunking) for f in files]
            state.vectors.attach(store.id, specs, state.faults.config.indexing)
        created = state.vectors.store(store.id)
        assert created is not None
        return created.to_json(_now())

    answer = await _run(create)
    log.info("vector_store_created", vector_store_id=answer["id"])
    return JSONResponse(answer)


async def list_stores(request: Request) -> Response:
    """GET /vector_stores."""
    state = server_state(request)
    params = _list_params(request, with_filter=False)

    def page() -> dict[str, Any]:
        found = state.vectors.list_stores(**params)
        if found is None:
            cursor = params["after"] or params["before"]
            raise invalid_request(f"No such vector store: {cursor}", param="after")
        stores, more = found
        return _page([s.to_json(_now()) for s in stores], more)

    return JSONResponse(await _run(page))


async def retrieve_store(request: Request) -> Response:
    """GET /vector_stores/{id}."""
    state = server_state(request)
    store_id = request.path_params["vector_store_id"]
    store = await _run(lambda: _live_store(state, store_id, writing=False))
    return JSONResponse(store.to_json(_now()))


async def delete_store(request: Request) -> Response:
    """DELETE /vector_stores/{id}: the store goes; its files stay Files."""
    state = server_state(request)
    store_id = request.path_params["vector_store_id"]
    if not await _run(state.vectors.delete_store, store_id):
        raise store_not_found(store_id)
    log.info("vector_store_deleted", vector_store_id=store_id)
    return JSONResponse({"id": store_id, "object": "vector_store.deleted", "deleted": True})


def _page(data: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else "",
        "last_id": data[-1]["id"] if data else "",
        "has_more": more,
    }


# -- store files -------------------------------------------------------------------------


async def attach_file(request: Request) -> Response:
    """POST /vector_stores/{id}/files: attach one File (indexing starts)."""
    state = server_state(request)
    store_id = request.path_params["vector_store_id"]
    body = await read_json_object(request, ATTACH_KEYS)
    file_id = _file_id(body.get("file_id"), "file_id")
    attributes = _attributes(body.get("attributes"))
    chunking = _chunking(body.get("chunking_strategy"))

    def attach() -> dict[str, Any]:
        _live_store(state, store_id, writing=True)
        spec = AttachSpec(_attachable(state, file_id), attributes, chunking)
        (record,) = state.vectors.attach(store_id, [spec], state.faults.config.indexing)
        return record.to_json()

    answer = await _run(attach)
    log.info("vector_store_file_attached", vector_store_id=store_id, file_id=file_id)
    return JSONResponse(answer)


async def list_store_files(request: Request) -> Response:
    """GET /vector_stores/{id}/files (``filter`` by status)."""
    state = server_state(request)
    store_id = request.path_params["vector_store_id"]
    params = _list_params(request, with_filter=True)

    def page() -> dict[str, Any]:
        _live_store(state, store_id, writing=False)
        found = state.vectors.list_files(store_id, **params)
        if found is None:
            cursor = params["after"] or params["before"]
            raise invalid_request(f"No such vector store file: {cursor}", param="after")
        files, more = found
        return _page([f.to_json() for f in files], more)

    return JSONResponse(await _run(page))


async def retrieve_store_file(request: Request) -> Response:
    """GET /vector_stores/{id}/files/{file_id}."""
    state = server_state(request)
    store_id = request.path_params["vector_store_id"]
    file_id = request.path_params["file_id"]

    def retrieve() -> dict[str, Any]:
        _live_store(state, store_id, writing=False)
        record = state.vectors.store_file(store_id, file_id)
        if record is None:
            raise store_file_not_found(store_id, file_id)
        return record.to_json()

    return JSONResponse(await _run(retrieve))


async def update_store_file(request: Request) -> Response:
    """POST /vector_stores/{id}/files/{file_id}: replace the file's attributes."""
    state = server_state(request)
    store_id = request.path_params["vector_store_id"]
    file_id = request.path_params["file_id"]
    body = await read_json_object(request, UPDATE_KEYS)
    if "attributes" not in body:
        raise invalid_request(
            "Missing required parameter: 'attributes'.",
            param="attributes",
            code="missing_required_parameter",
        )
    attributes = _attributes(body["attributes"])

    def update() -> dict[str, Any]:
        _live_store(state, store_id, writing=True)
        record = state.vectors.update_attributes(store_id, file_id, attributes)
        if record is None:
            raise store_file_not_found(store_id, file_id)
        return record.to_json()

    return JSONResponse(await _run(update))


async def detach_file(request: Request) -> Response:
    """DELETE /vector_stores/{id}/files/{file_id}: out of the store; the File stays."""
    state = server_state(request)
    store_id = request.path_params["vector_store_id"]
    file_id = request.path_params["file_id"]

    def detach() -> None:
        _live_store(state, store_id, writing=False)
        if not state.vectors.detach(store_id, file_id):
            raise store_file_not_found(store_id, file_id)

    await _run(detach)
    log.info("vector_store_file_detached", vector_store_id=store_id, file_id=file_id)
    return JSONResponse({"id": file_id, "object": "vector_store.file.deleted", "deleted": True})


# -- file batches ------------------------------------------------------------------------


def _batch_items(body: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(file id, attributes, chunking) per file: the ``files`` form, or ``file_ids``."""
    file_ids, files = body.get("file_ids"), body.get("files")
    if file_ids is not None and files is not None:
        raise invalid_request(
            "'file_ids' and 'files' are mutually exclusive: give one of them.", param="files"
        )
    if files is None:
        if file_ids is None:
            raise invalid_request(
                "Missing required parameter: 'file_ids' (or 'files').",
                param="file_ids",
                code="missing_required_parameter",
            )
        attributes = _attributes(body.get("attributes"))
        chunking = _chunking(body.get("chunking_strategy"))
        ids = _file_ids(file_ids, "file_ids", 1, MAX_BATCH_FILES)
        return [(file_id, attributes, chunking) for file_id in ids]
    if not isinstance(files, list) or not 1 <= len(files) <= MAX_BATCH_FILES:
        raise invalid_request(
            f"Invalid 'files': expected a list of 1 to {MAX_BATCH_FILES} objects.",
            param="files",
            code="invalid_value",
        )
    items: dict[str, tuple[str, Any, Any]] = {}
    for n, item in enumerate(files):
        where = f"files[{n}]"
        if not isinstance(item, dict):
            raise invalid_request(f"Invalid '{where}': expected an object.", param=where)
        unknown = sorted(set(item) - ATTACH_KEYS)
        if unknown:
            raise invalid_request(
                f"Unrecognized request argument supplied: {where}.{unknown[0]}",
                param=f"{where}.{unknown[0]}",
            )
        file_id = _file_id(item.get("file_id"), f"{where}.file_id")
        items.setdefault(
            file_id,
            (
                file_id,
                _attributes(item.get("attributes"), f"{where}.attributes"),
                _chunking(item.get("chunking_strategy"), f"{where}.chunking_strategy"),
            ),
        )
    return list(items.values())


async def create_batch(request: Request) -> Response:
    """POST /vector_stores/{id}/file_batches: attach up to 2,000 files at once."""
    state = server_state(request)
    store_id = request.path_params["vector_store_id"]
    body = await read_json_object(request, BATCH_KEYS)
    items = _batch_items(body)

    def create() -> dict[str, Any]:
        _live_store(state, store_id, writing=True)
        specs = [AttachSpec(_attachable(state, f), a, c) for f, a, c in items]
        batch_id = new_id("vsfb_")
        state.vectors.attach(store_id, specs, state.faults.config.indexing, batch_id=batch_id)
        batch = state.vectors.batch(store_id, batch_id)
        assert batch is not None
        return batch.to_json()

    answer = await _run(create)
    log.info("vector_store_batch_created", vector_store_id=store_id, files=len(items))
    return JSONResponse(answer)


async def retrieve_batch(request: Request) -> Response:
    """GET /vector_stores/{id}/file_batches/{batch_id}."""
    state = server_state(request)
    store_id = request.path_params["vector_store_id"]
    batch_id = request.path_params["batch_id"]

    def retrieve() -> dict[str, Any]:
        _live_store(state, store_id, writing=False)
        batch = state.vectors.batch(store_id, batch_id)
        if batch is None:
            raise batch_not_found(batch_id)
        return batch.to_json()

    return JSONResponse(await _run(retrieve))


async def cancel_batch(request: Request) -> Response:
    """POST /vector_stores/{id}/file_batches/{batch_id}/cancel."""
    state = server_state(request)
    store_id = request.path_params["vector_store_id"]
    batch_id = request.path_params["batch_id"]

    def cancel() -> dict[str, Any]:
        _live_store(state, store_id, writing=False)
        batch = state.vectors.batch(store_id, batch_id)
        if batch is None:
            raise batch_not_found(batch_id)
        if batch.status == "in_progress":
            batch = state.vectors.cancel_batch(store_id, batch_id)
            assert batch is not None
        return batch.to_json()

    return JSONResponse(await _run(cancel))


async def list_batch_files(request: Request) -> Response:
    """GET /vector_stores/{id}/file_batches/{batch_id}/files (``filter`` by status)."""
    state = server_state(request)
    store_id = request.path_params["vector_store_id"]
    batch_id = request.path_params["batch_id"]
    params = _list_params(request, with_filter=True)

    def page() -> dict[str, Any]:
        _live_store(state, store_id, writing=False)
        if state.vectors.batch(store_id, batch_id) is None:
            raise batch_not_found(batch_id)
        found = state.vectors.list_files(store_id, batch_id=batch_id, **params)
        if found is None:
            cursor = params["after"] or params["before"]
            raise invalid_request(f"No such vector store file: {cursor}", param="after")
        files, more = found
        return _page([f.to_json() for f in files], more)

    return JSONResponse(await _run(page))


def vector_store_routes() -> list[BaseRoute]:
    base = "/v1/vector_stores"
    one = base + "/{vector_store_id}"
    batch = one + "/file_batches/{batch_id}"
    return [
        Route(base, create_store, methods=["POST"]),
        Route(base, list_stores, methods=["GET"]),
        Route(one, retrieve_store, methods=["GET"]),
        Route(one, delete_store, methods=["DELETE"]),
        Route(one + "/files", attach_file, methods=["POST"]),
        Route(one + "/files", list_store_files, methods=["GET"]),
        Route(one + "/files/{file_id}", retrieve_store_file, methods=["GET"]),
        Route(one + "/files/{file_id}", update_store_file, methods=["POST"]),
        Route(one + "/files/{file_id}", detach_file, methods=["DELETE"]),
        Route(one + "/file_batches", create_batch, methods=["POST"]),
        Route(batch, retrieve_batch, methods=["GET"]),
        Route(batch + "/cancel", cancel_batch, methods=["POST"]),
        Route(batch + "/files", list_batch_files, methods=["GET"]),
    ]
