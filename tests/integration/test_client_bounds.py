"""HttpFilesRemote bounds every answer: a deadline per request, a cap per body, a bound on
paging, and a check of every field, against ``tests/oddserver.py`` over real HTTP.

Each test names its bound; "ends within" bounds are wall time measured here, and are
loose (a loaded 2-core machine) but far below what the unbounded client took (for ever).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from oddserver import KEY, MODES, Handler, OddServer, Request, file_json, gzip_bomb

from syncd.errors import (
    AmbiguousError,
    PermanentError,
    ProtocolError,
    RemoteError,
    RetryableError,
)
from syncd.remote.bounds import ERROR_ANSWER_MAX_BYTES, LIST_PAGE_MAX_BYTES
from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.settings import RemoteSettings

OddFactory = Callable[..., OddServer]


def client(server: OddServer, **options: Any) -> HttpFilesRemote:
    settings = {"backoff_base": 0.01, "backoff_cap": 0.05, "max_attempts": 2, **options}
    remote_options = {k: settings.pop(k) for k in ("page_size", "max_files") if k in settings}
    return HttpFilesRemote(
        RemoteSettings(base_url=server.base_url, api_key=KEY, **settings), **remote_options
    )


def timed(call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        call()
    except BaseException as exc:  # the test looks at it
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


# -- deadlines -----------------------------------------------------------------------------


def test_a_trickling_listing_ends_at_the_deadline(odd_server: OddFactory) -> None:
    """One byte every 0.2 s never trips a per-read timeout; the 1 s deadline per request
    ends each attempt: 2 attempts end within 6 s, saying so."""
    server = odd_server("trickle-listing")
    server.add_file("a.txt", b"hello")
    with client(server, answer_deadline=1.0, timeout=30.0) as remote:
        error, seconds = timed(lambda: list(remote.list_files()))
    assert isinstance(error, RetryableError)
    assert "deadline of 1 s" in str(error)
    assert seconds < 6.0
    assert len(server.requests) == 2


def test_a_trickling_download_ends_at_its_deadline(odd_server: OddFactory) -> None:
    """A download gets answer_deadline + size / min_transfer_rate: 1 s + 5 B at 1 B/s = 6 s
    per attempt; content trickling without end fails within 15 s for 2 attempts."""

    def trickle(h: Handler, r: Request, n: int) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "5")
        h.end_headers()
        while not h.server.stopping.wait(3.0):
            h.wfile.write(b"x")
            h.wfile.flush()

    server = odd_server(trickle)
    with client(server, answer_deadline=1.0, min_transfer_rate=1.0) as remote:
        error, seconds = timed(lambda: remote.download("file-x", io.BytesIO(), expected_bytes=5))
    assert isinstance(error, RetryableError), error
    assert "deadline of 6 s" in str(error)
    assert seconds < 15.0


def test_an_upload_whose_answer_trickles_is_ambiguous_at_the_deadline(
    odd_server: OddFactory, tmp_path: Path
) -> None:
    """The whole upload was read, then the answer trickles: AmbiguousError (it may be
    stored) at timeout + size / rate = 1 s + 5 s, not never; one request."""

    def trickle(h: Handler, r: Request, n: int) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        while not h.server.stopping.wait(0.2):
            h.wfile.write(b" ")
            h.wfile.flush()

    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")
    server = odd_server(trickle)
    with client(server, timeout=1.0, min_transfer_rate=1.0) as remote:
        error, seconds = timed(lambda: remote.upload(source, "a.txt", "user_data"))
    assert isinstance(error, AmbiguousError), error
    assert "deadline" in str(error)
    assert seconds < 12.0
    assert len(server.requests) == 1


# -- size caps -----------------------------------------------------------------------------


def test_a_listing_that_never_ends_stops_at_the_page_cap(odd_server: OddFactory) -> None:
    """A listing body without end is read up to LIST_PAGE_MAX_BYTES (16 MiB), then
    ProtocolError; each attempt's connection is closed, nothing is yielded."""
    server = odd_server("endless-listing")
    yielded: list[Any] = []
    with client(server) as remote:
        error, seconds = timed(lambda: yielded.extend(remote.list_files()))
    assert isinstance(error, ProtocolError)
    assert "larger than 16 MiB" in str(error)
    assert yielded == []
    assert len(server.requests) == 2
    assert seconds < 30.0


def test_a_gzip_bomb_is_decoded_only_up_to_the_cap(odd_server: OddFactory) -> None:
    """256 MiB of spaces in 250 KB of gzip: decoded piece by piece, stopped past 16 MiB."""
    gzip_bomb()  # made before the clock starts
    server = odd_server("gzip-bomb")
    with client(server) as remote:
        error, seconds = timed(lambda: list(remote.list_files()))
    assert isinstance(error, ProtocolError)
    assert f"larger than {LIST_PAGE_MAX_BYTES // (1024 * 1024)} MiB" in str(error)
    assert seconds < 30.0


def test_a_page_of_millions_of_tiny_values_is_refused_before_parsing(
    odd_server: OddFactory,
) -> None:
    """8 MiB of '[],' would be ~3 million lists in memory: refused by the value count
    (64 per file asked for), before json.loads runs."""
    body = b'{"object": "list", "data": [], "junk": [' + b"[]," * (8 * 1024 * 1024 // 3) + b"[]]}"
    server = odd_server(lambda h, r, n: h.answer(200, body))
    with client(server, page_size=100) as remote, pytest.raises(ProtocolError, match="values"):
        list(remote.list_files())


def test_a_json_answer_over_its_cap_is_a_protocol_error(odd_server: OddFactory) -> None:
    """A file object bigger than 1 MiB (JSON_ANSWER_MAX_BYTES) is not a file object."""
    huge = {**file_json("file-x"), "filename": "x" * (2 * 1024 * 1024)}
    server = odd_server(lambda h, r, n: h.answer(200, huge))
    with client(server) as remote, pytest.raises(ProtocolError, match="larger than 1 MiB"):
        remote.retrieve("file-x")


def test_an_error_answer_is_read_only_for_its_first_64_kib(odd_server: OddFactory) -> None:
    """A 400 with a 32 MiB body: its message is taken from the first 64 KiB (cut to 300
    characters), the rest is never read."""
    body = b"nope " * (32 * 1024 * 1024 // 5)
    server = odd_server(lambda h, r, n: h.answer(400, body))
    with client(server) as remote, pytest.raises(PermanentError) as info:
        remote.retrieve("file-x")
    assert len(str(info.value)) < 400
    assert ERROR_ANSWER_MAX_BYTES == 64 * 1024


def test_a_download_stops_at_the_expected_size(odd_server: OddFactory) -> None:
    """Content without end for a file of 5 bytes: PermanentError, and not one byte past
    the 5 reaches the output."""
    server = odd_server("oversized-download")
    file_id = server.add_file("a.txt", b"hello")
    out = io.BytesIO()
    with client(server) as remote, pytest.raises(PermanentError, match="more than the file's 5"):
        remote.download(file_id, out, expected_bytes=5)
    assert len(out.getvalue()) <= 5


def test_a_download_announcing_too_many_bytes_is_refused_at_once(odd_server: OddFactory) -> None:
    """A Content-Length above the expected size fails before a byte is read."""
    server = odd_server(lambda h, r, n: h.answer(200, b"0123456789"))
    out = io.BytesIO()
    with client(server) as remote, pytest.raises(PermanentError, match="announces 10 bytes"):
        remote.download("file-x", out, expected_bytes=5)
    assert out.getvalue() == b""


# -- paging --------------------------------------------------------------------------------


def test_fresh_cursors_for_ever_stop_at_the_page_bound(odd_server: OddFactory) -> None:
    """has_more true with a new cursor (and one file) every time stops after
    ceil(max_files / page) + 1000 pages with ProtocolError: 5000 / 1000 + 1000 = 1005
    requests, in under 60 s."""
    server = odd_server("fresh-cursor")
    with client(server, page_size=1000, max_files=5000) as remote:
        error, seconds = timed(lambda: list(remote.list_files()))
    assert isinstance(error, ProtocolError)
    assert "still more after 1005 pages" in str(error)
    assert len(server.requests) == 1005
    assert seconds < 60.0


def test_full_pages_for_ever_stop_at_the_file_bound(odd_server: OddFactory) -> None:
    """Full pages of new files for ever stop once more than max_files were listed."""

    def pages(h: Handler, r: Request, n: int) -> None:
        data = [file_json(f"file-{n}-{i}") for i in range(10)]
        h.answer(200, {"object": "list", "data": data, "has_more": True})

    server = odd_server(pages)
    with (
        client(server, page_size=10, max_files=95) as remote,
        pytest.raises(ProtocolError, match="more than 95 files"),
    ):
        list(remote.list_files())
    assert len(server.requests) == 10


# -- every field checked -------------------------------------------------------------------


@pytest.mark.parametrize("kind", [m.split(":")[1] for m in MODES if m.startswith("malformed:")])
def test_one_malformed_entry_makes_the_whole_listing_fail(
    odd_server: OddFactory, kind: str
) -> None:
    """One bad entry among good ones (not an object, no id, bytes "abc", expires_at a
    date, 1e400, '.', '..', NUL in the id): the page is retried like a 5xx, then the
    listing raises ProtocolError naming the entry; no file of it was yielded."""
    server = odd_server(f"malformed:{kind}")
    server.add_file("a.txt", b"hello")
    server.add_file("b.txt", b"bravo")
    yielded: list[Any] = []
    with (
        client(server, max_attempts=3) as remote,
        pytest.raises(ProtocolError, match="entry 2") as info,
    ):
        yielded.extend(remote.list_files())
    assert yielded == []
    assert len(server.requests) == 3
    assert "\x00" not in str(info.value)


@pytest.mark.parametrize(
    ("has_more", "data"),
    [("yes", []), (None, {"id": "file-a"}), (False, "file-a")],
)
def test_a_page_with_wrongly_typed_fields_is_a_protocol_error(
    odd_server: OddFactory, has_more: Any, data: Any
) -> None:
    """has_more must be a boolean and data a list of objects; anything else is no page."""
    page = {"object": "list", "data": data, "has_more": has_more}
    server = odd_server(lambda h, r, n: h.answer(200, page))
    with client(server) as remote, pytest.raises(ProtocolError):
        list(remote.list_files())


@pytest.mark.parametrize("file_id", [".", "..", "", "a/b", "a\x00b", "..\\x"])
def test_an_unsafe_id_never_becomes_a_request(odd_server: OddFactory, file_id: str) -> None:
    """An id from an old ledger that is not one safe path segment: delete, retrieve and
    download raise PermanentError and send nothing (no DELETE /v1/files, no DELETE /v1)."""
    server = odd_server("honest")
    with client(server) as remote:
        for call in (
            lambda: remote.delete(file_id),
            lambda: remote.retrieve(file_id),
            lambda: remote.download(file_id, io.BytesIO(), expected_bytes=1),
        ):
            with pytest.raises(PermanentError, match="no request sent"):
                call()
    assert server.requests == []


def test_ids_are_sent_as_one_encoded_path_segment(odd_server: OddFactory) -> None:
    """An id with '?', '#', '%' and a space stays one segment: the server sees it whole."""
    server = odd_server("honest")
    file_id = server.add_file("a.txt", b"hello", file_id="file-a?b#c%d e")
    with client(server) as remote:
        assert remote.retrieve(file_id).id == file_id
        remote.delete(file_id)
    assert [r.path for r in server.requests] == ["/v1/files/file-a%3Fb%23c%25d%20e"] * 2
    assert server.wrong_requests() == []


def test_an_upload_answered_with_a_dot_id_is_ambiguous(
    odd_server: OddFactory, tmp_path: Path
) -> None:
    """A 200 whose file id is '.' is not a valid File: AmbiguousError (reconcile), never an
    id that a later delete would turn into DELETE /v1/files."""
    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")
    server = odd_server("dot-ids")
    with client(server) as remote, pytest.raises(AmbiguousError, match="safe path segment"):
        remote.upload(source, "a.txt", "user_data")
    assert server.wrong_requests() == []


def test_a_retrieve_answer_with_a_bad_field_is_retried_then_a_protocol_error(
    odd_server: OddFactory,
) -> None:
    """created_at true (a boolean) is not a time: retried like a 5xx, then ProtocolError."""
    server = odd_server(lambda h, r, n: h.answer(200, {**file_json("file-x"), "created_at": True}))
    with client(server, max_attempts=3) as remote, pytest.raises(ProtocolError, match="boolean"):
        remote.retrieve("file-x")
    assert len(server.requests) == 3


def test_server_text_in_errors_is_scrubbed_escaped_and_short(odd_server: OddFactory) -> None:
    """A message with an escape sequence, the key and URL credentials, and a redirect to
    a Location with the same: the errors escape control characters and hold neither."""
    message = f"\x1b[2J{KEY} see http://user:hunter2@proxy.example/ " + "x" * 1000
    bodies = {"error": {"message": message, "code": "\x1b[31m"}}
    server = odd_server(lambda h, r, n: h.answer(400, bodies))
    with client(server) as remote, pytest.raises(PermanentError) as info:
        remote.retrieve("file-x")
    text = str(info.value)
    assert "\x1b" not in text and KEY not in text and "hunter2" not in text
    assert len(text) < 400
    for location in ("http://user:hunter2@evil.example/v1", "http://evil.example/\x1b[2J"):
        server.behaviour = lambda h, r, n, at=location: h.answer(302, b"", {"Location": at})
        with client(server) as remote, pytest.raises(RemoteError) as info:
            remote.retrieve("file-x")
        assert "\x1b" not in str(info.value) and "hunter2" not in str(info.value)


def test_a_listing_without_paging_fields_still_reads(odd_server: OddFactory) -> None:
    """Strictness keeps compatibility: no has_more, and null bytes/created_at/status."""
    entry = {"id": "file-a", "bytes": None, "created_at": None, "status": None}
    server = odd_server(lambda h, r, n: h.answer(200, json.dumps({"data": [entry]}).encode()))
    with client(server) as remote:
        (listed,) = list(remote.list_files())
    assert (listed.id, listed.bytes, listed.created_at, listed.status) == (
        "file-a",
        0,
        0,
        "processed",
    )
