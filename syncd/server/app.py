"""The Files API over ASGI: the five ``/v1/files`` endpoints, faithful to the spec.

(The Uploads API is ``syncd.server.uploads``, the Vector Stores API
``syncd.server.vector_stores``; ``create_app`` serves all three.)

``create_app(store, ...)`` builds the Starlette app wrapped in the ``Gate`` (stats, key,
faults). Handlers validate like the real API and answer ``OpenAIFile``/list/delete
objects or the error envelope. Disk work runs in worker threads; uploads stream into
the store (``syncd.server.form``) and content streams out of it.

Choices where the spec is silent (see also ``envelope.py``):

- ``first_id``/``last_id`` of an empty page are ``""`` (the schema requires strings).
- ``after`` naming a file that never existed is a 400 (param ``after``); a file that was
  deleted or expired still marks its place, so paging survives concurrent deletes.
- Over-size content is a 413; ``batch`` files are limited to 200 MB as the spec says.
- An empty (0-byte) file is refused with a 400, whatever its purpose.
- Files with purpose ``batch`` expire after 30 days unless ``expires_after`` says else.

Where the real API is stricter than the spec, so are we: ``GET /files/{id}/content``
answers 400 ``Not allowed to download files of purpose: <purpose>`` (``param``/``code``
null) for ``user_data``, ``assistants``, ``fine-tune`` and ``evals``, after the 404 for
an unknown id (``allow_all_downloads`` turns the refusal off, for a private store one
can read back). A full disk is a 507, any other I/O or database error a 500 logged in
one line; bad input is always a 4xx.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Mapping
from typing import IO, Any

import anyio.to_thread
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from syncd.api import BATCH_MAX_BYTES, JSONL_PURPOSES, LIST_PAGE_LIMIT, MAX_FILE_BYTES
from syncd.errors import SyncdError
from syncd.server.envelope import (
    ApiError,
    file_not_found,
    invalid_request,
    invalid_url,
    server_error,
    storage_error,
    too_large,
)
from syncd.server.faults import FaultInjector, parse_faults
from syncd.server.form import FormReceiver, JsonlChecker, multipart_boundary, receive_form
from syncd.server.gate import BodyTimeouts, Gate, RequestStats
from syncd.server.jsonbody import read_json
from syncd.server.ratelimit import RateLimiter, RequestRate
from syncd.server.state import ServerState, drain_body, server_state
from syncd.server.store import FileStore, IncomingBlob
from syncd.server.upload_store import UploadStore
from syncd.server.uploads import upload_routes
from syncd.server.validation import (
    DIGITS,
    check_jsonl_file,
    default_expiry,
    download_refusal,
    invalid_jsonl,
    jsonl_name_error,
    parse_expires_after,
    purpose_error,
)
from syncd.server.vector_store_db import Indexer, VectorStoreDB
from syncd.server.vector_stores import vector_store_routes

CONTENT_CHUNK = 1024 * 1024
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that hung up mid-request

log = structlog.get_logger(__name__)


async def create_file(request: Request) -> Response:
    """POST /files: multipart ``file`` + ``purpose`` (+ ``expires_after[...]``)."""
    state = server_state(request)
    try:
        boundary = multipart_boundary(request)
    except ApiError:
        await drain_body(request)
        raise
    checker: list[JsonlChecker] = []

    def open_file(name: str, filename: str, fields: dict[str, str]) -> IncomingBlob | None:
        if name != "file" or any(p.field_name == "file" for p in receiver.files):
            return None  # an unknown or a second file part: dropped, like an unknown field
        purpose = fields.get("purpose")
        if purpose is not None:
            problem = purpose_error(purpose) or jsonl_name_error(purpose, filename)
            if problem is not None:
                raise problem
            if purpose in JSONL_PURPOSES:
                checker.append(JsonlChecker())
                receiver.on_file_data = checker[0].feed
        return state.store.new_incoming()

    receiver = FormReceiver(
        boundary,
        max_file_bytes=state.max_bytes,
        open_file=open_file,
        too_large=lambda: too_large(state.max_bytes),
    )
    try:
        await receive_form(request, receiver)
        if receiver.problem is not None:
            raise receiver.problem
        record = await anyio.to_thread.run_sync(_land, state, receiver, checker)
    except ClientDisconnect:
        log.info("upload_aborted", reason="client disconnected")
        return Response(status_code=CLIENT_CLOSED_REQUEST)  # for the stats; nobody reads it
    finally:  # also when cancelled (shutting down): no temp file outlives the request
        receiver.discard()  # what did not land; a few closes and unlinks
    log.info("file_created", file_id=record["id"], bytes=record["bytes"])
    return JSONResponse(record)


def _land(
    state: ServerState, receiver: FormReceiver, checker: list[JsonlChecker]
) -> dict[str, Any]:
    """Validate the received form, then commit its file to the store (worker thread)."""
    parts = [p for p in receiver.files if p.field_name == "file"]
    if not parts or parts[0].blob is None:
        raise invalid_request(
            "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
        )
    part = parts[0]
    purpose = receiver.fields.get("purpose")
    problem = purpose_error(purpose) or jsonl_name_error(str(purpose), part.filename)
    if problem is not None:
        raise problem
    assert purpose is not None and part.blob is not None
    expires = parse_expires_after(
        receiver.fields.get("expires_after[anchor]"), receiver.fields.get("expires_after[seconds]")
    )
    if part.size == 0:
        raise invalid_request(f"File {part.filename!r} is empty.", param="file", code="empty_file")
    if purpose == "batch" and part.size > BATCH_MAX_BYTES:
        raise invalid_request(
            f"File is too large for purpose 'batch': the maximum is {BATCH_MAX_BYTES} bytes.",
            param="file",
            code="file_too_large",
        )
    if purpose in JSONL_PURPOSES:
        part.blob.finish()
        # Without a checker the purpose came after the file: check what landed in tmp/.
        fault = checker[0].finish() if checker else check_jsonl_file(part.blob)
        if fault is not None:
            raise invalid_jsonl(part.filename, fault)
    record = state.store.commit(
        part.blob,
        filename=part.filename,
        purpose=purpose,
        expires_after=default_expiry(purpose, expires),
    )
    return record.to_json()


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = int(raw) if DIGITS.fullmatch(raw) else lo - 1  # not " 5", "1_0" nor "+5"
    if not lo <= value <= hi:
        raise invalid_request(
            f"Invalid '{name}': {raw!r}. Expected an integer between {lo} and {hi}.",
            param=name,
            code="invalid_value",
        )
    return value


async def list_files(request: Request) -> Response:
    """GET /files: ``purpose``, ``limit`` (1..10000), ``order`` (asc|desc), ``after``."""
    state = server_state(request)
    limit = _int_param(request, "limit", LIST_PAGE_LIMIT, 1, LIST_PAGE_LIMIT)
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid_request(
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
    purpose = request.query_params.get("purpose") or None
    after_id = request.query_params.get("after") or None

    def page() -> dict[str, Any]:
        after = None
        if after_id is not None:
            after = state.store.cursor_position(after_id)
            if after is None:
                raise invalid_request(f"No such File object: {after_id}", param="after")
        records, has_more = state.store.list(purpose=purpose, order=order, after=after, limit=limit)
        data = [r.to_json() for r in records]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else "",
            "last_id": data[-1]["id"] if data else "",
            "has_more": has_more,
        }

    return JSONResponse(await anyio.to_thread.run_sync(page))


async def retrieve_file(request: Request) -> Response:
    """GET /files/{file_id}."""
    file_id = request.path_params["file_id"]
    record = await anyio.to_thread.run_sync(server_state(request).store.get, file_id)
    if record is None:
        raise file_not_found(file_id)
    return JSONResponse(record.to_json())


async def delete_file(request: Request) -> Response:
    """DELETE /files/{file_id}: ``{id, object: "file", deleted: true}``; the file also
    leaves every vector store (as documented)."""
    state = server_state(request)
    file_id = request.path_params["file_id"]
    deleted = await anyio.to_thread.run_sync(state.store.delete, file_id)
    if not deleted:
        raise file_not_found(file_id)
    await anyio.to_thread.run_sync(state.vectors.file_deleted, file_id)
    log.info("file_deleted", file_id=file_id)
    return JSONResponse({"id": file_id, "object": "file", "deleted": True})


class BlobResponse(StreamingResponse):
    """A stored file's bytes, read in a worker thread; the handle is closed however the
    answer ends (sent, client gone, cancelled), even if streaming never began."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self._handle = handle
        super().__init__(
            self._chunks(),
            media_type="application/octet-stream",
            headers={"content-length": str(size)},
        )

    async def _chunks(self) -> AsyncIterator[bytes]:
        while chunk := await anyio.to_thread.run_sync(self._handle.read, CONTENT_CHUNK):
            yield chunk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._handle.close()


async def file_content(request: Request) -> Response:
    """GET /files/{file_id}/content: the raw bytes, streamed from disk.

    An unknown id is a 404 first; then a purpose the real API will not serve is its 400
    (``validation.download_refusal``), unless the server runs with allow_all_downloads.
    """
    state = server_state(request)
    file_id = request.path_params["file_id"]
    record = await anyio.to_thread.run_sync(state.store.get, file_id)
    if record is None:
        raise file_not_found(file_id)
    refusal = None if state.allow_all_downloads else download_refusal(record.purpose)
    if refusal is not None:
        raise refusal
    opened = await anyio.to_thread.run_sync(state.store.open_content, file_id)
    if opened is None:  # deleted meanwhile
        raise file_not_found(file_id)
    record, handle = opened
    return BlobResponse(handle, record.bytes)


async def get_stats(request: Request) -> Response:
    return JSONResponse(server_state(request).stats.to_json())


async def reset_stats(request: Request) -> Response:
    server_state(request).stats.reset()
    return JSONResponse({"reset": True})


async def faults_endpoint(request: Request) -> Response:
    """GET: the fault configuration; PUT: replace it (a JSON object, ``{}`` for none)."""
    injector = server_state(request).faults
    if request.method == "PUT":
        try:
            config = parse_faults(await read_json(request))
        except SyncdError as exc:  # ConfigError from parse
            raise invalid_request(f"Invalid fault configuration: {exc}") from exc
        injector.replace(config)
    return JSONResponse(injector.config.to_json())


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status in (404, 405):
        error = invalid_url(request.method, request.url.path, status)
        error.headers.update(exc.headers or {})
        return error.response()
    return ApiError(status, str(exc.detail)).response()


async def _storage_error(request: Request, exc: Exception) -> Response:
    """A full disk is a 507 (retryable); any other I/O or database error a logged 500."""
    error = storage_error(exc)
    if error is None:
        log.error("internal_error", path=request.url.path, error=f"{type(exc).__name__}: {exc}")
        return server_error().response()
    log.warning("storage_full", path=request.url.path, error=str(exc))
    return error.response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("internal_error", path=request.url.path, error=f"{type(exc).__name__}: {exc}")
    return server_error().response()


def create_app(
    store: FileStore,
    *,
    api_key: str | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    faults: FaultInjector | None = None,
    allow_all_downloads: bool = False,
    rate_limits: Mapping[str, RequestRate] | None = None,
    body_timeouts: BodyTimeouts | None = None,
    indexer: Indexer | None = None,
) -> ASGIApp:
    """The whole server as one ASGI app (the Files, Uploads and Vector Stores routes
    behind the Gate). ``indexer`` sets how long vector store indexing takes."""
    state = ServerState(
        store=store,
        uploads=UploadStore(store),
        vectors=VectorStoreDB(store, indexer),
        max_bytes=max_bytes,
        faults=faults or FaultInjector(),
        stats=RequestStats(),
        allow_all_downloads=allow_all_downloads,
    )
    routes = [
        Route("/v1/files", create_file, methods=["POST"]),
        Route("/v1/files", list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", retrieve_file, methods=["GET"]),
        Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
        *upload_routes(),
        *vector_store_routes(),
        Route("/_syncd/stats", get_stats, methods=["GET"]),
        Route("/_syncd/stats/reset", reset_stats, methods=["POST"]),
        Route("/_syncd/faults", faults_endpoint, methods=["GET", "PUT"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            OSError: _storage_error,
            sqlite3.Error: _storage_error,
            Exception: _internal_error,
        },
    )
    app.state.syncd = state
    return Gate(
        app,
        api_key=api_key,
        faults=state.faults,
        stats=state.stats,
        limiter=RateLimiter(rate_limits),
        body_timeouts=body_timeouts or BodyTimeouts(),
    )
