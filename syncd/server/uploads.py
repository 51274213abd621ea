"""The Uploads API: a large file sent as parts, assembled on disk into one File.

``POST /v1/uploads`` (JSON: filename, purpose, bytes, mime_type, expires_after?) ->
Upload ``pending`` for an hour; ``POST /v1/uploads/{id}/parts`` (multipart ``data``, at
most 64 MiB) -> UploadPart; ``POST /v1/uploads/{id}/complete`` (``part_ids`` in order,
``md5`` optional) -> Upload ``completed`` with the nested File; ``POST
/v1/uploads/{id}/cancel`` -> Upload ``cancelled``. State lives in ``UploadStore``.

Choices where the spec is silent: parts up to 64 MiB (the official SDK's part size)
and uploads up to 8 GiB; the filename rules of ``POST /files`` apply (``.jsonl`` for
fine-tune and batch, checked at create, every line checked at complete); a 0-byte
upload is refused; cancelling a cancelled upload answers it again (idempotent); parts
not named in ``complete`` are dropped. A part request carries one ``data`` part: a second
one is read and dropped, never written. JSON bodies are bounded (``jsonbody``).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio.to_thread
import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncd.api import (
    BATCH_MAX_BYTES,
    JSONL_PURPOSES,
    MAX_PART_BYTES,
    MAX_UPLOAD_BYTES,
    UPLOADS_API_PURPOSES,
)
from syncd.server.envelope import ApiError, invalid_request, too_large
from syncd.server.form import FormReceiver, JsonlChecker, multipart_boundary, receive_form
from syncd.server.jsonbody import read_json_object
from syncd.server.state import ServerState, drain_body, server_state
from syncd.server.store import IncomingBlob
from syncd.server.upload_store import SlotBlob, UploadClosedError, UploadRecord
from syncd.server.validation import (
    READ_CHUNK,
    default_expiry,
    invalid_jsonl,
    jsonl_name_error,
    parse_expires_after,
    purpose_error,
)

CREATE_KEYS = frozenset({"filename", "purpose", "bytes", "mime_type", "expires_after"})
COMPLETE_KEYS = frozenset({"part_ids", "md5"})

log = structlog.get_logger(__name__)


def upload_not_found(upload_id: str) -> ApiError:
    return ApiError(404, f"No such Upload object: {upload_id}", param="upload_id")


def _not_pending(upload: UploadRecord, action: str) -> ApiError:
    return invalid_request(
        f"Cannot {action} upload {upload.id}: its status is {upload.current_status()!r}, "
        "not 'pending'.",
        param="upload_id",
    )


def _required_string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise invalid_request(
            f"Missing required parameter: '{key}'." if value is None else f"Invalid '{key}'.",
            param=key,
            code="missing_required_parameter" if value is None else "invalid_value",
        )
    return value


async def create_upload(request: Request) -> Response:
    """POST /uploads: validate the announced file, answer the ``pending`` Upload."""
    state = server_state(request)
    body = await read_json_object(request, CREATE_KEYS)
    filename = _required_string(body, "filename")
    mime_type = _required_string(body, "mime_type")
    purpose = body.get("purpose")
    problem = purpose_error(
        purpose if isinstance(purpose, str) or purpose is None else repr(purpose),
        UPLOADS_API_PURPOSES,
    )
    if problem is not None:
        raise problem
    assert isinstance(purpose, str)
    size = body.get("bytes")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_UPLOAD_BYTES:
        raise invalid_request(
            f"Invalid 'bytes': {size!r}. Expected an integer between 1 and {MAX_UPLOAD_BYTES}.",
            param="bytes",
            code="invalid_value",
        )
    if purpose == "batch" and size > BATCH_MAX_BYTES:
        raise invalid_request(
            f"File is too large for purpose 'batch': the maximum is {BATCH_MAX_BYTES} bytes.",
            param="bytes",
            code="file_too_large",
        )
    problem = jsonl_name_error(purpose, filename)
    if problem is not None:
        problem.param = "filename"
        raise problem
    expires_after = body.get("expires_after")
    expires = None
    if expires_after is not None:
        if not isinstance(expires_after, dict):
            raise invalid_request(
                "Invalid 'expires_after': expected an object.", param="expires_after"
            )
        expires = parse_expires_after(expires_after.get("anchor"), expires_after.get("seconds"))
    record = await anyio.to_thread.run_sync(
        lambda: state.uploads.create(
            filename=filename,
            purpose=purpose,
            size=size,
            mime_type=mime_type,
            expires_after=expires,
        )
    )
    log.info("upload_created", upload_id=record.id, bytes=size)
    return JSONResponse(record.to_json())


async def _pending_upload(state: ServerState, upload_id: str, action: str) -> UploadRecord:
    upload = await anyio.to_thread.run_sync(state.uploads.get, upload_id)
    if upload is None:
        raise upload_not_found(upload_id)
    if upload.current_status() != "pending":
        raise _not_pending(upload, action)
    return upload


async def add_part(request: Request) -> Response:
    """POST /uploads/{id}/parts: multipart field ``data``, streamed to disk."""
    state = server_state(request)
    upload_id = request.path_params["upload_id"]
    # Before any await: parts get their slots in the order their requests arrive.
    slot = state.uploads.reserve_slot(upload_id)
    try:
        upload = await _pending_upload(state, upload_id, "add a part to")
        if slot is None:  # pending in files.db but not in memory: not ours to write
            raise _not_pending(upload, "add a part to")
        boundary = multipart_boundary(request)
    except ApiError:
        await drain_body(request)
        raise

    def open_data(name: str, filename: str, fields: dict[str, str]) -> IncomingBlob | None:
        if name != "data" or any(p.blob is not None for p in receiver.files):
            return None  # another part, or a second `data`: dropped, never written
        try:
            return state.uploads.open_slot(upload_id, slot)
        except UploadClosedError:
            now = state.uploads.get(upload_id)
            raise (
                upload_not_found(upload_id) if now is None else _not_pending(now, "add a part to")
            ) from None

    receiver = FormReceiver(
        boundary,
        max_file_bytes=MAX_PART_BYTES,
        open_file=open_data,
        too_large=lambda: too_large(MAX_PART_BYTES),
        file_fields=frozenset({"data"}),
    )
    try:
        return await _land_part(request, state, upload_id, receiver)
    except ClientDisconnect:
        return Response(status_code=499)
    finally:
        receiver.discard()  # whatever did not land; a few closes and unlinks, even if cancelled


async def _land_part(
    request: Request, state: ServerState, upload_id: str, receiver: FormReceiver
) -> Response:
    await receive_form(request, receiver)
    if receiver.problem is not None:
        raise receiver.problem
    blobs = [p.blob for p in receiver.files if p.blob is not None]
    if not blobs:
        raise invalid_request(
            "Missing required parameter: 'data'.", param="data", code="missing_required_parameter"
        )
    blob = blobs[0]
    assert isinstance(blob, SlotBlob)
    part = await anyio.to_thread.run_sync(state.uploads.add_part, upload_id, blob)
    if part is None:
        upload = await anyio.to_thread.run_sync(state.uploads.get, upload_id)
        assert upload is not None
        raise _not_pending(upload, "add a part to")
    return JSONResponse(part.to_json())


def _part_ids(body: dict[str, Any]) -> list[str]:
    part_ids = body.get("part_ids")
    if not isinstance(part_ids, list) or not all(isinstance(p, str) for p in part_ids):
        raise invalid_request(
            "Invalid 'part_ids': expected a list of part ids.",
            param="part_ids",
            code="missing_required_parameter" if part_ids is None else "invalid_value",
        )
    if len(set(part_ids)) != len(part_ids):
        raise invalid_request("Invalid 'part_ids': a part is listed twice.", param="part_ids")
    return part_ids


async def complete_upload(request: Request) -> Response:
    """POST /uploads/{id}/complete: assemble the parts in order into a File."""
    state = server_state(request)
    upload_id = request.path_params["upload_id"]
    body = await read_json_object(request, COMPLETE_KEYS)
    part_ids = _part_ids(body)
    md5 = body.get("md5")
    if md5 is not None and not isinstance(md5, str):
        raise invalid_request("Invalid 'md5': expected a string.", param="md5")
    upload = await _pending_upload(state, upload_id, "complete")
    answer = await anyio.to_thread.run_sync(_assemble, state, upload, part_ids, md5)
    log.info("upload_completed", upload_id=upload_id, file_id=answer["file"]["id"])
    return JSONResponse(answer)


def _assemble(
    state: ServerState, upload: UploadRecord, part_ids: list[str], md5: str | None
) -> dict[str, Any]:
    """Check the parts, copy them in order into a new File, mark the upload completed."""
    parts = state.uploads.parts(upload.id)
    for part_id in part_ids:
        if part_id not in parts:
            raise invalid_request(
                f"Part {part_id} does not belong to upload {upload.id}.", param="part_ids"
            )
    total = sum(parts[p].bytes for p in part_ids)
    if total != upload.bytes:
        raise invalid_request(
            f"The parts hold {total} bytes, but the upload was created for {upload.bytes} bytes.",
            param="part_ids",
        )
    if not state.uploads.set_status(upload.id, "completing", old="pending"):
        raise _not_pending(upload, "complete")
    ordered = [parts[p] for p in part_ids]
    sources = [(*state.uploads.part_source(part), part.bytes) for part in ordered]
    in_place = state.uploads.in_place(upload.id, ordered, len(ordered) == len(parts))
    try:
        if in_place:
            incoming = state.uploads.adopt_data(upload.id, total)
            want_jsonl = upload.purpose in JSONL_PURPOSES
            running = None if md5 is None else state.uploads.md5_in_place(upload.id, len(ordered))
            if running is not None and not want_jsonl:
                digest, fault = running, None
            else:
                digest, fault = _inspect(sources, md5 is not None, want_jsonl)
        else:
            incoming = state.store.new_incoming()
            # Copy (in the kernel) and inspect (md5, JSON Lines) side by side: two reads
            # of the same pages, mostly from the page cache, instead of one Python loop.
            with ThreadPoolExecutor(1, thread_name_prefix="syncd-assemble") as pool:
                copying = pool.submit(_append_all, incoming, sources)
                try:
                    digest, fault = _inspect(
                        sources, md5 is not None, upload.purpose in JSONL_PURPOSES
                    )
                finally:
                    copying.result()
    except BaseException:
        state.uploads.release(upload.id)
        state.uploads.set_status(upload.id, "pending", old="completing")
        raise
    try:
        if md5 is not None and digest != md5.lower():
            raise invalid_request(
                f"The md5 of the assembled file is {digest}, not {md5}.", param="md5"
            )
        if fault is not None:
            raise invalid_jsonl(upload.filename, fault)
        record = state.store.commit(
            incoming,
            filename=upload.filename,
            purpose=upload.purpose,
            expires_after=default_expiry(upload.purpose, upload.expires_after),
        )
    except BaseException:
        incoming.discard()
        state.uploads.release(upload.id)
        state.uploads.set_status(upload.id, "pending", old="completing")
        raise
    # Completed: the folder (and with it the data file's other name) is gone before any
    # part may open it again.
    state.uploads.set_status(upload.id, "completed", old="completing", file_id=record.id)
    state.uploads.release(upload.id)
    log.info("upload_assembled", upload_id=upload.id, parts=len(ordered), in_place=in_place)
    completed = state.uploads.get(upload.id)
    assert completed is not None
    return completed.to_json(file=record.to_json())


Source = tuple[Path, int, int]  # a part's bytes: file, offset, length


def _append_all(incoming: IncomingBlob, sources: list[Source]) -> None:
    for path, offset, length in sources:
        incoming.append_file(path, offset, length)


def _inspect(sources: list[Source], want_md5: bool, want_jsonl: bool) -> tuple[str, str | None]:
    """The md5 (hex, "" if not wanted) and the first JSON Lines fault of the parts in order."""
    digest = hashlib.md5(usedforsecurity=False)
    checker = JsonlChecker() if want_jsonl else None
    if not want_md5 and checker is None:
        return "", None
    for path, offset, length in sources:
        with open(path, "rb", buffering=0) as handle:
            handle.seek(offset)
            left = length
            while left > 0 and (chunk := handle.read(min(READ_CHUNK, left))):
                left -= len(chunk)
                if want_md5:
                    digest.update(chunk)
                if checker is not None:
                    checker.feed(chunk)
    return (digest.hexdigest() if want_md5 else ""), (checker.finish() if checker else None)


async def cancel_upload(request: Request) -> Response:
    """POST /uploads/{id}/cancel: a pending upload becomes ``cancelled``; parts go."""
    state = server_state(request)
    upload_id = request.path_params["upload_id"]
    upload = await anyio.to_thread.run_sync(state.uploads.get, upload_id)
    if upload is None:
        raise upload_not_found(upload_id)
    if upload.current_status() == "pending":
        changed = await anyio.to_thread.run_sync(
            lambda: state.uploads.set_status(upload_id, "cancelled", old="pending")
        )
        if not changed:
            raise _not_pending(upload, "cancel")
    elif upload.current_status() != "cancelled":
        raise _not_pending(upload, "cancel")
    cancelled = await anyio.to_thread.run_sync(state.uploads.get, upload_id)
    assert cancelled is not None
    return JSONResponse(cancelled.to_json())


def upload_routes() -> list[BaseRoute]:
    return [
        Route("/v1/uploads", create_upload, methods=["POST"]),
        Route("/v1/uploads/{upload_id}/parts", add_part, methods=["POST"]),
        Route("/v1/uploads/{upload_id}/complete", complete_upload, methods=["POST"]),
        Route("/v1/uploads/{upload_id}/cancel", cancel_upload, methods=["POST"]),
    ]
