"""A Files API server on loopback that misbehaves on purpose, one way at a time.

`syncd serve` is faithful to the API; this server is not. Honest by default (an
in-memory Files API good enough for `syncd sync`, `run`, `ls` and `pull`: list with
paging, upload, retrieve, content, delete), it misbehaves in the way its ``mode`` names
(``MODES`` says what each does), or answers every request as a test scripts it
(``behaviour``, for the client's integration tests; ``forwarding`` is one that hands
each request on to an honest server and makes its answers hostile in a chosen way)::

    with OddServer("trickle-listing") as server:
        result = run_syncd(None, "ls", "--base-url", server.base_url, env=server.env())
    assert server.wrong_requests() == []

It records every request (method, raw path, headers, body), so that a test can check
that none went to a URL it must not (``wrong_requests``: a delete of ``/v1/files`` or
``/v1``, say). The ``mode`` may be changed while it runs. A stdlib
``ThreadingHTTPServer``: real HTTP, httpx is never mocked.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

KEY = "sk-odd-server-key-0123456789"
TRICKLE_SECONDS = 0.2  # one byte this often, for ever ("trickle-*" modes)
CREATED_AT = 1_700_000_000

MODES: dict[str, str] = {
    "honest": "an in-memory Files API that answers as the API does",
    "endless-listing": "GET /files answers 200, then a JSON list that never ends, as fast "
    "as the client reads it",
    "trickle-listing": "GET /files answers one byte every TRICKLE_SECONDS, for ever",
    "fresh-cursor": "GET /files answers one new file per page with has_more: true, for ever",
    "oversized-download": "GET /files/{id}/content sends bytes without end (listed sizes "
    "are honest)",
    "nested-listing": "GET /files answers JSON nested 100,000 deep",
    "gzip-bomb": "GET /files answers 256 MiB of spaces, gzip-compressed to ~250 KB",
    "dot-ids": "uploads get the ids '.' and then '..' (and are listed with them)",
    "echo-key": "every request is answered 401, quoting its Authorization header",
    **{
        f"malformed:{kind}": f"the listing holds one bad entry among good ones: {what}"
        for kind, what in {
            "not-object": "a number instead of an object",
            "no-id": "an object without 'id'",
            "bytes-string": "'bytes': 'abc'",
            "expires-date": "'expires_at': '2024-01-01T00:00:00Z'",
            "huge-number": "'bytes': 1e400",
            "dot-id": "'id': '.'",
            "dotdot-id": "'id': '..'",
            "nul-id": "'id': 'file-\\u0000x'",
        }.items()
    },
}

_BAD_ENTRIES: dict[str, bytes] = {
    "not-object": b"42",
    "no-id": b'{"object": "file", "bytes": 3, "filename": "x.txt", "purpose": "user_data"}',
    "bytes-string": b'{"id": "file-bad", "bytes": "abc", "created_at": 1, "filename": "x"}',
    "expires-date": b'{"id": "file-bad", "bytes": 3, "expires_at": "2024-01-01T00:00:00Z"}',
    "huge-number": b'{"id": "file-bad", "bytes": 1e400, "created_at": 1}',
    "dot-id": b'{"id": ".", "bytes": 3, "created_at": 1, "filename": "x.txt"}',
    "dotdot-id": b'{"id": "..", "bytes": 3, "created_at": 1, "filename": "x.txt"}',
    "nul-id": b'{"id": "file-\\u0000x", "bytes": 3, "created_at": 1, "filename": "x.txt"}',
}

# What a well-behaved client may ask for; SEG is one path segment that is not a dot one.
_SEG = r"(?!\.\.?$)[^/]+"
_ALLOWED = [
    (method, re.compile(pattern.replace("SEG", _SEG)))
    for method, pattern in [
        ("GET", r"/v1/files"),
        ("POST", r"/v1/files"),
        ("GET", r"/v1/files/SEG"),
        ("GET", r"/v1/files/SEG/content"),
        ("DELETE", r"/v1/files/SEG"),
        ("POST", r"/v1/uploads"),
        ("POST", r"/v1/uploads/SEG/(?:parts|complete|cancel)"),
    ]
]


class Request:
    """What the client sent, as the server saw it."""

    def __init__(self, handler: BaseHTTPRequestHandler, body: bytes | None) -> None:
        self.method = handler.command
        self.path = handler.path
        self.headers = {k.lower(): v for k, v in handler.headers.items()}
        self.body = body
        self.at = time.monotonic()

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    def __repr__(self) -> str:
        return f"{self.method} {self.path}"


Behaviour = Callable[["Handler", Request, int], None]
_HOP_HEADERS = frozenset(
    {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding"}
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls
    server: OddServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def drop(self) -> None:
        """Close the connection without an answer."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def handle_any(self, read_body: bool = True) -> None:
        body = self.read_body() if read_body and self.command == "POST" else None
        request = Request(self, body)
        with self.server.lock:
            self.server.requests.append(request)
            count = len(self.server.requests)
        try:
            if self.server.behaviour is not None:
                self.server.behaviour(self, request, count)
            else:
                _Modes(self, request).dispatch()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up: fine
            self.close_connection = True

    def do_GET(self) -> None:
        self.handle_any()

    def do_DELETE(self) -> None:
        self.handle_any()

    def do_POST(self) -> None:
        self.handle_any(read_body=self.server.read_post_body)


class OddServer(ThreadingHTTPServer):
    """The server (module docstring); ``start()`` serves from a thread, ``stop()`` ends it."""

    daemon_threads = True

    def __init__(
        self,
        mode: str = "honest",
        *,
        behaviour: Behaviour | None = None,
        read_post_body: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode = mode
        self.behaviour = behaviour
        self.read_post_body = read_post_body
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self._ids = itertools.count(1)
        self._dot_ids = iter([".", ".."])
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: clients that hang up on a misbehaving answer are the point."""

    def start(self) -> OddServer:
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

    def __enter__(self) -> OddServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment a `syncd` command needs to talk to this server."""
        return {"OPENAI_API_KEY": KEY, **extra}

    def add_file(
        self, filename: str, content: bytes, purpose: str = "user_data", file_id: str | None = None
    ) -> str:
        """Store a file as if some client had uploaded it; returns its id."""
        with self.lock:
            file_id = file_id or f"file-{next(self._ids):08d}"
            self.files[file_id] = file_object(file_id, len(content), filename, purpose)
            self.files[file_id]["created_at"] = int(time.time())
            self.contents[file_id] = content
        return file_id

    def wrong_requests(self) -> list[Request]:
        """Every request to a URL no well-behaved client of the Files API sends."""
        return [
            r
            for r in self.requests
            if not any(r.method == m and p.fullmatch(r.route) for m, p in _ALLOWED)
        ]

    def count(self, method: str, route_prefix: str = "/v1/files") -> int:
        return sum(
            1 for r in self.requests if r.method == method and r.route.startswith(route_prefix)
        )


def forwarding(base_url: str, rewrite: Callable[[Any], Any]) -> Behaviour:
    """A behaviour that sends each request on to the server at ``base_url`` (its
    ``.../v1``, say a `syncd serve`) and answers what that server answered, a JSON body
    passed through ``rewrite`` first: the honest server's answers, made hostile in the
    one way ``rewrite`` chooses (it may change the parsed body in place and return it)."""
    origin = base_url.removesuffix("/v1")

    def forward(handler: Handler, request: Request, count: int) -> None:
        headers = {k: v for k, v in request.headers.items() if k not in _HOP_HEADERS}
        response = httpx.request(
            request.method,
            origin + request.path,
            headers=headers,
            content=request.body,
            timeout=60,
        )
        body = response.content
        if response.headers.get("content-type", "").startswith("application/json"):
            body = json.dumps(rewrite(response.json())).encode()
        handler.answer(response.status_code, body)

    return forward


def file_json(file_id: str, size: int = 5, filename: str = "a.txt") -> dict[str, Any]:
    """A file object as the API describes one."""
    return file_object(file_id, size, filename, "user_data")


def file_object(file_id: str, size: int, filename: str, purpose: str) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": CREATED_AT,
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "expires_at": None,
    }


_BOMB: list[bytes] = []


def gzip_bomb() -> bytes:
    """256 MiB of spaces inside a JSON string, gzip-compressed (made once, ~250 KB)."""
    if not _BOMB:
        out = io.BytesIO()
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as packed:
            packed.write(b'{"object": "list", "data": [], "junk": "')
            block = b" " * (1024 * 1024)
            for _ in range(256):
                packed.write(block)
            packed.write(b'"}')
        _BOMB.append(out.getvalue())
    return _BOMB[0]


class _Modes:
    """One request answered as the server's mode says."""

    def __init__(self, handler: Handler, request: Request) -> None:
        self.h = handler
        self.r = request
        self.server = handler.server
        self.query = {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}

    def dispatch(self) -> None:
        mode, route, method = self.server.mode, self.r.route, self.r.method
        if mode == "echo-key":
            quoted = self.r.headers.get("authorization", "")
            message = f"Incorrect API key provided: {quoted}"
            self.h.answer(401, {"error": {"message": message, "code": "invalid_api_key"}})
        elif route == "/v1/files" and method == "GET":
            self.listing()
        elif route == "/v1/files" and method == "POST":
            self.upload()
        elif (m := re.fullmatch(r"/v1/files/([^/]+)/content", route)) and method == "GET":
            self.content(unquote(m.group(1)))
        elif (m := re.fullmatch(r"/v1/files/([^/]+)", route)) and method == "GET":
            self.retrieve(unquote(m.group(1)))
        elif (m := re.fullmatch(r"/v1/files/([^/]+)", route)) and method == "DELETE":
            self.delete(unquote(m.group(1)))
        else:
            self.h.answer(404, {"error": {"message": f"no route {method} {route}"}})

    # -- listing -----------------------------------------------------------------------

    def listing(self) -> None:
        mode = self.server.mode
        if mode == "endless-listing":
            self.stream_for_ever(b'{"object": "list", "data": [', _endless_entries())
        elif mode == "trickle-listing":
            self.trickle(json.dumps(self.honest_page()).encode())
        elif mode == "fresh-cursor":
            number = next(self.server._ids)
            entry = file_object(f"file-fresh-{number:09d}", 3, f"f{number}.txt", "user_data")
            self.h.answer(200, {"object": "list", "data": [entry], "has_more": True})
        elif mode == "nested-listing":
            self.h.answer(200, b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
        elif mode == "gzip-bomb":
            self.h.answer(200, gzip_bomb(), {"Content-Encoding": "gzip"})
        elif mode.startswith("malformed:"):
            page = self.honest_page()
            good = [json.dumps(f).encode() for f in page["data"]]
            bad = _BAD_ENTRIES[mode.removeprefix("malformed:")]
            data = b", ".join([*good[:1], bad, *good[1:]])
            self.h.answer(200, b'{"object": "list", "data": [' + data + b'], "has_more": false}')
        else:
            self.h.answer(200, self.honest_page())

    def honest_page(self) -> dict[str, Any]:
        with self.server.lock:
            files = list(self.server.files.values())
        purpose = self.query.get("purpose")
        if purpose:
            files = [f for f in files if f["purpose"] == purpose]
        files.sort(
            key=lambda f: (f["created_at"], f["id"]), reverse=self.query.get("order") != "asc"
        )
        after = self.query.get("after")
        if after:
            ids = [f["id"] for f in files]
            files = files[ids.index(after) + 1 :] if after in ids else []
        limit = int(self.query.get("limit", "10000"))
        page = files[:limit]
        return {
            "object": "list",
            "data": page,
            "has_more": len(files) > limit,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }

    # -- files -------------------------------------------------------------------------

    def upload(self) -> None:
        body = self.r.body or b""
        head = f"Content-Type: {self.r.headers.get('content-type', '')}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        fields: dict[str, bytes] = {}
        filename = ""
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            fields[str(name)] = payload if isinstance(payload, bytes) else b""
            if name == "file":
                filename = str(part.get_filename() or "")
        content = fields.get("file", b"")
        purpose = fields.get("purpose", b"user_data").decode()
        file_id = None
        if self.server.mode == "dot-ids":
            file_id = next(self.server._dot_ids, None)
        file_id = self.server.add_file(filename, content, purpose, file_id=file_id)
        self.h.answer(200, self.server.files[file_id])

    def retrieve(self, file_id: str) -> None:
        found = self.server.files.get(file_id)
        if found is None:
            self.h.answer(404, {"error": {"message": f"No such File object: {file_id}"}})
        else:
            self.h.answer(200, found)

    def content(self, file_id: str) -> None:
        if file_id not in self.server.contents:
            self.h.answer(404, {"error": {"message": f"No such File object: {file_id}"}})
        elif self.server.mode == "oversized-download":
            self.stream_for_ever(b"", itertools.repeat(b"x" * 65536))
        else:
            self.h.answer(
                200, self.server.contents[file_id], {"Content-Type": "application/octet-stream"}
            )

    def delete(self, file_id: str) -> None:
        with self.server.lock:
            found = self.server.files.pop(file_id, None)
            self.server.contents.pop(file_id, None)
        if found is None:
            self.h.answer(404, {"error": {"message": f"No such File object: {file_id}"}})
        else:
            self.h.answer(200, {"id": file_id, "object": "file", "deleted": True})

    # -- misbehaving bodies --------------------------------------------------------------

    def stream_for_ever(self, head: bytes, chunks: Any) -> None:
        """200, then ``head`` and ``chunks`` until the client or the server stops."""
        self.h.close_connection = True
        self.h.send_response(200)
        self.h.send_header("Content-Type", "application/json")
        self.h.send_header("Connection", "close")
        self.h.end_headers()
        self.h.wfile.write(head)
        for chunk in chunks:
            if self.server.stopping.is_set():
                return
            self.h.wfile.write(chunk)

    def trickle(self, body: bytes) -> None:
        """200 with an honest Content-Length, then one byte per TRICKLE_SECONDS."""
        self.h.close_connection = True
        self.h.send_response(200)
        self.h.send_header("Content-Type", "application/json")
        self.h.send_header("Content-Length", str(len(body) + 10**9))
        self.h.end_headers()
        for byte in itertools.cycle(body):
            if self.server.stopping.wait(TRICKLE_SECONDS):
                return
            self.h.wfile.write(bytes([byte]))
            self.h.wfile.flush()


def _endless_entries() -> Any:
    """Distinct file entries, a hundred per write, for ever."""
    for batch in itertools.count():
        yield "".join(
            json.dumps(file_object(f"file-endless-{n:012d}", 3, f"f{n}.txt", "user_data")) + ", "
            for n in range(batch * 100, batch * 100 + 100)
        ).encode()


__all__ = ["KEY", "MODES", "Handler", "OddServer", "Request", "file_json", "forwarding"]
