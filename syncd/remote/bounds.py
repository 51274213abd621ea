"""Reading a server's answer within bounds: a deadline per request, a cap per body.

A server syncd does not control decides how much it sends and how slowly. httpx bounds
each socket read (``timeout``), not a request: a body that trickles one byte a second
never times out, and ``response.read()`` keeps whatever arrives. So every request syncd
sends runs under two bounds, whatever the server does:

- a deadline for the whole request (connect, send, headers, body), set with
  ``request_deadline(seconds)`` around it. ``install_deadlines`` puts a network backend
  under the client whose every socket read, write and connect waits at most until the
  calling thread's deadline, then raises ``httpcore.ReadTimeout`` (which httpx turns into
  ``httpx.ReadTimeout``, so the usual translation applies: retryable, or ambiguous for a
  File-creating request whose body had left). Deadlines by kind of request
  (``RemoteSettings``; ``SYNCD_ANSWER_DEADLINE`` lowers the first for tests):

  ======================================  ==============================================
  a listing page, a JSON answer            ``answer_deadline`` (120 s)
  a download of N bytes                    ``answer_deadline`` + N / ``min_transfer_rate``
  an upload or a part of N bytes           ``timeout`` (600 s, the server's time to
                                           answer) + N / ``min_transfer_rate``
  completing an upload                     ``timeout`` (600 s)
  ======================================  ==============================================

  ``min_transfer_rate`` is 100 kB/s: slower than that, a transfer is stuck, not slow.

- a cap on every body, applied while it is read (``read_body``, ``iter_body``), after
  decompression, which is done here piece by piece so that a small gzip body cannot
  expand to gigabytes in memory (only ``gzip`` and ``deflate`` are asked for):

  ======================================  ==============================================
  a listing page                           ``LIST_PAGE_MAX_BYTES`` (16 MiB; 10,000 files
                                           are 3-5 MB, so 1.6 KB per file fits) and at
                                           most ``LIST_VALUES_PER_FILE`` (64) JSON values
                                           per file asked for, so that 16 MiB of ``[],``
                                           cannot become millions of objects
  a JSON answer (a file, an upload, ...)   ``JSON_ANSWER_MAX_BYTES`` (1 MiB)
  an error answer                          the first ``ERROR_ANSWER_MAX_BYTES`` (64 KiB)
                                           are read for its message, the rest dropped
  a download                               the expected size, exactly
                                           (``syncd.remote.files_http``)
  ======================================  ==============================================

  JSON nested too deeply to parse (``RecursionError``), integers of thousands of
  digits and any other unparseable body are ``ProtocolError``, like an answer over its
  cap. A listing as a whole is bounded in ``syncd.remote.files_http`` (pages and files).
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import httpcore
import httpx

from syncd.errors import ProtocolError

LIST_PAGE_MAX_BYTES = 16 * 1024 * 1024
LIST_VALUES_PER_FILE = 64
LIST_VALUES_SLACK = 1024  # the envelope: object, has_more, first_id, last_id, ...
JSON_ANSWER_MAX_BYTES = 1024 * 1024
ERROR_ANSWER_MAX_BYTES = 64 * 1024
ACCEPT_ENCODING = "gzip, deflate"  # what ``_Decoder`` can decode within bounds
DECODE_PIECE = 1024 * 1024  # the most one step of decompression may produce
WRITE_SLICE = 16 * 1024  # writes go out in slices so that the deadline is checked often

_local = threading.local()


def _deadline() -> tuple[float, float] | None:
    """This thread's (deadline, its length in seconds), if a request runs under one."""
    found: tuple[float, float] | None = getattr(_local, "deadline", None)
    return found


@contextlib.contextmanager
def request_deadline(seconds: float) -> Iterator[None]:
    """Every network wait of this thread inside the block ends by ``seconds`` from now
    (a deadline already in force that ends sooner stays)."""
    outer = _deadline()
    mine = (time.monotonic() + seconds, seconds)
    _local.deadline = mine if outer is None or outer[0] > mine[0] else outer
    try:
        yield
    finally:
        _local.deadline = outer


def _wait_limit(timeout: float | None, error: type[Exception]) -> tuple[float | None, bool]:
    """``timeout`` shortened to what is left of the deadline, and whether the deadline is
    what limits it; ``error`` if it has passed already."""
    found = _deadline()
    if found is None:
        return timeout, False
    left = found[0] - time.monotonic()
    if left <= 0:
        raise error(_passed())
    if timeout is None or left < timeout:
        return left, True
    return timeout, False


def _passed() -> str:
    found = _deadline()
    seconds = found[1] if found else 0.0
    return f"the request ran past its deadline of {seconds:g} s"


_T = TypeVar("_T")


def _bounded(
    call: Callable[[float | None], _T], timeout: float | None, error: type[Exception]
) -> _T:
    """``call(limit)`` under the deadline; a timeout the deadline caused says so."""
    limit, by_deadline = _wait_limit(timeout, error)
    try:
        return call(limit)
    except httpcore.TimeoutException:
        if by_deadline:
            raise error(_passed()) from None
        raise


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait ends at the calling thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        inner = self._inner
        return _bounded(lambda limit: inner.read(max_bytes, limit), timeout, httpcore.ReadTimeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        for start in range(0, len(view), WRITE_SLICE):
            piece = bytes(view[start : start + WRITE_SLICE])
            _bounded(functools.partial(self._inner.write, piece), timeout, httpcore.WriteTimeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner
        stream = _bounded(
            lambda limit: inner.start_tls(ssl_context, server_hostname, limit),
            timeout,
            httpcore.ConnectTimeout,
        )
        return _DeadlineStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """``inner`` (httpcore's own backend) with every stream under the deadline."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner
        stream = _bounded(
            lambda limit: inner.connect_tcp(host, port, limit, local_address, socket_options),
            timeout,
            httpcore.ConnectTimeout,
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner
        stream = _bounded(
            lambda limit: inner.connect_unix_socket(path, limit, socket_options),
            timeout,
            httpcore.ConnectTimeout,
        )
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def install_deadlines(client: httpx.Client) -> None:
    """Put ``client``'s connection pools (direct, and each proxy's from the environment)
    on the deadline backend. httpx has no public hook for a network backend, so this
    reaches into its pools; it fails loudly, at start, if their shape ever changes (and
    ``tests/integration/test_client_bounds.py`` pins that a trickle is cut off)."""
    transports = [client._transport, *(t for t in client._mounts.values() if t is not None)]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if not isinstance(backend, httpcore.NetworkBackend):
            raise RuntimeError(
                "cannot bound request times: this httpx/httpcore has no "
                "_pool._network_backend (pin httpx<1 or update syncd.remote.bounds)"
            )
        if not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]


# -- bodies ------------------------------------------------------------------------------


class _Decoder:
    """Content-Encoding ``gzip``/``deflate``/none, decoded at most ``DECODE_PIECE`` bytes
    per step (httpx's decoders inflate a whole chunk at once: a 64 KiB chunk of a gzip
    bomb becomes 64 MiB)."""

    def __init__(self, encoding: str, what: str) -> None:
        name = encoding.strip().lower()
        self._what = what
        self._inflate: Any = None
        self._may_be_raw = name == "deflate"  # some servers send raw deflate, as httpx allows
        if name in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif name == "deflate":
            self._inflate = zlib.decompressobj()
        elif name not in ("", "identity"):
            raise ProtocolError(f"{what}: the answer is encoded as {name[:40]!r}, not as asked")

    def pieces(self, data: bytes) -> Iterator[bytes]:
        if self._inflate is None:
            if data:
                yield data
            return
        while data:
            try:
                piece = self._inflate.decompress(data, DECODE_PIECE)
            except zlib.error as exc:
                if not self._may_be_raw:
                    raise ProtocolError(f"{self._what}: the compressed answer is corrupt") from exc
                self._may_be_raw = False
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._may_be_raw = False  # the first bytes decoded: the format is right
            if piece:
                yield piece
            data = self._inflate.unconsumed_tail

    def finish(self) -> bytes:
        """What the decompressor still holds (a few KiB at most: all input was taken)."""
        if self._inflate is None:
            return b""
        try:
            rest: bytes = self._inflate.flush()
        except zlib.error as exc:
            raise ProtocolError(f"{self._what}: the compressed answer is corrupt") from exc
        return rest


def iter_body(response: httpx.Response, what: str) -> Iterator[bytes]:
    """The decoded body of a streamed ``response``, in pieces of at most ``DECODE_PIECE``
    bytes plus one socket read; the caller counts and stops (memory stays flat)."""
    decoder = _Decoder(response.headers.get("content-encoding", ""), what)
    for chunk in response.iter_raw():
        yield from decoder.pieces(chunk)
    rest = decoder.finish()
    if rest:
        yield rest


def size_text(n: int) -> str:
    """``16 MiB``, ``64 KiB``, ``5 bytes``: a cap in a message."""
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} bytes"


def read_body(response: httpx.Response, cap: int, what: str, *, truncate: bool = False) -> bytes:
    """The decoded body of a streamed ``response``, at most ``cap`` bytes: a longer one is
    ``ProtocolError`` (or, with ``truncate``, cut at ``cap``). The response is closed."""
    parts: list[bytes] = []
    size = 0
    try:
        for piece in iter_body(response, what):
            size += len(piece)
            if size > cap:
                if truncate:
                    parts.append(piece[: cap - (size - len(piece))])
                    break
                raise ProtocolError(
                    f"{what}: the answer is larger than {size_text(cap)}, more than any "
                    "answer to this request can be"
                )
            parts.append(piece)
    finally:
        response.close()
    return b"".join(parts)


def parse_json(body: bytes, what: str, *, max_values: int | None = None) -> Any:
    """``body`` parsed as JSON; ``ProtocolError`` if it is not JSON, nests too deeply,
    holds an integer too long to read, or (``max_values``) more values than allowed.

    The count is an upper bound found without parsing (commas and brackets, which also
    counts those inside strings), so memory is bounded before ``json.loads`` runs.
    """
    if max_values is not None:
        values = body.count(b",") + body.count(b"[") + body.count(b"{")
        if values > max_values:
            raise ProtocolError(
                f"{what}: the answer holds more than {max_values} JSON values, more than "
                "the files asked for can have"
            )
    try:
        return json.loads(body)
    except RecursionError:
        raise ProtocolError(f"{what}: the answer is JSON nested too deeply to read") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise ProtocolError(f"{what}: the answer is not JSON ({reason})") from None
