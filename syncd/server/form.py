"""Streaming multipart/form-data reception: file parts go straight into the store.

Starlette's own form parser spools file parts to a temporary file elsewhere and then
hands them over; we parse the body ourselves with python-multipart's streaming parser so
that a file part is written exactly once, into the store's ``tmp/``, while it arrives.
Memory stays flat whatever the size: the body is fed to the parser in batches of about
``BATCH_BYTES``, in a worker thread (the parser's callbacks write to disk).

``FormReceiver`` is synchronous and knows nothing about HTTP; ``receive_form`` drives it
from a Starlette request. A problem found on the way (a part too large, a bad field)
stops the writing, but the rest of the body is still read and dropped so that the client
gets a clean answer instead of a reset connection (the gate's body deadline bounds that).

Bounds (each a 400 unless said, and nothing of the request is kept):

- the boundary: 1 to 70 characters of RFC 2046's alphabet (``MAX_BOUNDARY_CHARS``);
- at most ``MAX_PARTS`` (16) parts in all, file parts included; a part's headers are
  python-multipart's (8 headers of at most 4,224 bytes);
- the plain fields together at most ``MAX_FIELDS_BYTES`` (64 KiB), held in memory;
- a file part at most ``max_file_bytes`` (413); a JSON Lines line ``MAX_JSONL_LINE_BYTES``;
- the body must end with its closing boundary: one cut short mid-part is refused;
- a full disk while writing is a 507 (``envelope.storage_error``), any other I/O error
  a 500, never the "could not parse" 400 a client would take for permanent.

A receiver opens at most one blob per file part its ``open_file`` accepts; ``discard``
closes and removes every one that did not land, and handlers call it on every way out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio.to_thread
import structlog
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from syncd.server.envelope import ApiError, invalid_request, server_error, storage_error
from syncd.server.store import IncomingBlob

BATCH_BYTES = 1024 * 1024
MAX_FIELDS_BYTES = 64 * 1024
MAX_PARTS = 16
MAX_BOUNDARY_CHARS = 70
MAX_JSONL_LINE_BYTES = 32 * 1024 * 1024
log = structlog.get_logger()
# RFC 2046 5.1.1: bchars, and the last one not a space.
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


class JsonlChecker:
    """Checks, chunk by chunk, that every line is valid JSON; remembers the first fault.

    A final newline is allowed; an empty line elsewhere, or no line at all, is a fault.
    Memory is bounded by the longest line (and a line beyond ``MAX_JSONL_LINE_BYTES`` is
    refused rather than buffered).
    """

    def __init__(self) -> None:
        self._partial = bytearray()
        self.lines = 0
        self.error: str | None = None

    def feed(self, data: bytes | memoryview) -> None:
        if self.error is not None:
            return
        chunk = bytes(data)
        start = 0
        while self.error is None:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                self._partial += chunk[start:]
                if len(self._partial) > MAX_JSONL_LINE_BYTES:
                    self.error = (
                        f"line {self.lines + 1} is longer than {MAX_JSONL_LINE_BYTES} bytes"
                    )
                    self._partial.clear()
                return
            if self._partial:
                self._partial += chunk[start:newline]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = chunk[start:newline]
            self._check(line)
            start = newline + 1

    def _check(self, line: bytes) -> None:
        self.lines += 1
        if not line.strip():
            self.error = f"line {self.lines} is empty"
            return
        try:
            json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            self.error = f"line {self.lines} is not valid JSON ({exc})"

    def finish(self) -> str | None:
        """The first fault found, or None if the whole content was valid JSON Lines."""
        if self.error is None and self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._check(line)
        if self.error is None and self.lines == 0:
            self.error = "the file is empty"
        return self.error


@dataclass
class FilePart:
    """The one file part of a form, received into an ``IncomingBlob``."""

    field_name: str
    filename: str
    blob: IncomingBlob | None
    size: int = 0


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    disposition: bytes = b""
    header_name: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    data: bytearray = field(default_factory=bytearray)
    file: FilePart | None = None


class FormReceiver:
    """Feeds a multipart body through python-multipart; not thread-safe, one per request.

    ``open_file(field_name, filename, fields_so_far)`` is called when a file part starts:
    it returns the blob to write into (or None to drop the part) and may raise ApiError.
    ``on_file_data(data)`` sees every byte written (e.g. a JsonlChecker's feed).
    Parts named in ``file_fields`` are received as files even without a filename
    (``curl -F data=...`` sends a plain field).
    """

    def __init__(
        self,
        boundary: bytes,
        *,
        max_file_bytes: int,
        open_file: Callable[[str, str, dict[str, str]], IncomingBlob | None],
        too_large: Callable[[], ApiError],
        file_fields: frozenset[str] = frozenset(),
    ) -> None:
        self.fields: dict[str, str] = {}
        self.files: list[FilePart] = []
        self.problem: ApiError | None = None
        self.on_file_data: Callable[[bytes], None] | None = None
        self._max_file_bytes = max_file_bytes
        self._open_file = open_file
        self._too_large = too_large
        self._file_fields = file_fields
        self._part = _Part()
        self._parts = 0
        self._fields_bytes = 0
        self._ended = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_end": self._on_end,
                "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
            },
        )

    def feed(self, data: bytes) -> None:
        """Parse more of the body; a malformed body becomes ``problem``."""
        if self.problem is not None:
            return
        try:
            self._parser.write(data)
        except ApiError as exc:
            self._fail(exc)
        except OSError as exc:  # writing a blob: a full disk is not the client's fault
            problem = storage_error(exc)
            if problem is None:
                log.error("form_write_failed", error=f"{type(exc).__name__}: {exc}")
            self._fail(problem or server_error())
        except Exception as exc:  # python-multipart's own parse errors
            self._fail(invalid_request(f"Could not parse multipart form: {exc}"))

    def finish(self) -> None:
        """The body is over: refuse it unless it ended with its closing boundary."""
        if self.problem is None and not self._ended:
            self._fail(
                invalid_request(
                    "Could not parse multipart form: the body ended before its closing "
                    "boundary (was it cut short?)."
                )
            )

    def discard(self) -> None:
        """Close and remove every blob opened for this form that did not land."""
        for part in self.files:
            if part.blob is not None:
                part.blob.discard()

    def _fail(self, problem: ApiError) -> None:
        if self.problem is None:
            self.problem = problem
        self.discard()

    def _on_end(self) -> None:
        self._ended = True

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise invalid_request(f"The multipart form has more than {MAX_PARTS} parts.")
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._part.header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._part.header_value += data[start:end]

    def _on_header_end(self) -> None:
        if bytes(self._part.header_name).lower() == b"content-disposition":
            self._part.disposition = bytes(self._part.header_value)
        self._part.header_name.clear()
        self._part.header_value.clear()

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._part.disposition)
        if b"name" not in options:
            raise invalid_request("A multipart part has no name in its Content-Disposition.")
        self._part.name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options or self._part.name in self._file_fields:
            filename = options.get(b"filename", b"").decode("utf-8", "replace")
            self._part.filename = filename
            blob = self._open_file(self._part.name, filename, dict(self.fields))
            self._part.file = FilePart(self._part.name, filename, blob)
            self.files.append(self._part.file)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        file = self._part.file
        if file is None:
            self._fields_bytes += end - start
            if self._fields_bytes > MAX_FIELDS_BYTES:
                raise invalid_request(
                    f"The form's fields are longer than {MAX_FIELDS_BYTES} bytes together."
                )
            self._part.data += data[start:end]
            return
        file.size += end - start
        if file.size > self._max_file_bytes:
            raise self._too_large()
        if file.blob is not None:
            chunk = data[start:end]
            file.blob.write(chunk)
            if self.on_file_data is not None:
                self.on_file_data(chunk)

    def _on_part_end(self) -> None:
        if self._part.file is None:
            self.fields[self._part.name] = self._part.data.decode("utf-8", "replace")


def multipart_boundary(request: Request) -> bytes:
    """The boundary of a multipart/form-data request, or a 400 naming the problem."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise invalid_request(
            "Invalid Content-Type header: expected multipart/form-data with a boundary."
        )
    boundary = params[b"boundary"]
    if not _BOUNDARY.fullmatch(boundary):
        raise invalid_request(
            "Invalid Content-Type header: a multipart boundary is 1 to "
            f"{MAX_BOUNDARY_CHARS} letters, digits or '()+_,-./:=? (RFC 2046)."
        )
    return boundary


async def receive_form(request: Request, receiver: FormReceiver) -> None:
    """Stream the request body through ``receiver`` in batches, in a worker thread.

    Returns when the whole body has been read; ``receiver.problem`` says whether it
    was accepted. After a problem the rest of the body is read and dropped.
    """
    batch: list[bytes] = []
    pending = 0
    async for chunk in request.stream():
        if receiver.problem is not None:
            continue  # drain: the client still gets a clean answer
        if not chunk:
            continue
        batch.append(chunk)
        pending += len(chunk)
        if pending >= BATCH_BYTES:
            data = b"".join(batch)
            batch.clear()
            pending = 0
            await anyio.to_thread.run_sync(receiver.feed, data)
    data = b"".join(batch) if receiver.problem is None else b""

    def _last() -> None:
        if data:
            receiver.feed(data)
        receiver.finish()

    await anyio.to_thread.run_sync(_last)
