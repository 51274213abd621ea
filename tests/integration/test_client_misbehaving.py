"""HttpFilesRemote against small real HTTP servers on loopback that misbehave on purpose.

`syncd serve` is faithful to the API; these servers are not: they repeat pages, lie about
sizes, drop connections, stall, and echo keys. Each is a ``tests/oddserver.OddServer``
scripted per test (the ``odd_server`` fixture), talked to over real HTTP (httpx is never
mocked).
"""

from __future__ import annotations

import io
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from oddserver import KEY, Handler, Request, file_json
from structlog.testing import capture_logs

from syncd.errors import AmbiguousError, FatalError, PermanentError, ProtocolError, RetryableError
from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.settings import RemoteSettings


def client(base_url: str, **settings: Any) -> HttpFilesRemote:
    options = {"backoff_base": 0.01, "backoff_cap": 0.05, **settings}
    page_size = options.pop("page_size", 10_000)
    return HttpFilesRemote(
        RemoteSettings(base_url=base_url, api_key=KEY, **options), page_size=page_size
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    return path


def test_a_server_repeating_a_page_stops_the_listing_with_an_error(odd_server: Any) -> None:
    """A list that keeps answering the same page raises ProtocolError, not a loop."""

    def same_page(h: Handler, r: Request, n: int) -> None:
        data = [file_json("file-a"), file_json("file-b")]
        h.answer(200, {"object": "list", "data": data, "has_more": True, "last_id": "file-b"})

    server = odd_server(same_page)
    with (
        client(server.base_url, page_size=2) as remote,
        pytest.raises(ProtocolError, match="repeated"),
    ):
        list(remote.list_files())
    assert len(server.requests) == 2
    assert "after=file-b" in server.requests[1].path


def test_has_more_with_an_empty_page_is_an_error(odd_server: Any) -> None:
    """has_more true on an empty page would loop for ever: ProtocolError instead."""

    def empty(h: Handler, r: Request, n: int) -> None:
        h.answer(200, {"object": "list", "data": [], "has_more": True})

    server = odd_server(empty)
    with client(server.base_url) as remote, pytest.raises(ProtocolError, match="empty"):
        list(remote.list_files())


def test_list_without_paging_fields_returns_the_one_page(odd_server: Any) -> None:
    """A server without has_more (classic Azure) is read as a single page."""

    def one_page(h: Handler, r: Request, n: int) -> None:
        h.answer(200, {"object": "list", "data": [file_json("file-a")]})

    server = odd_server(one_page)
    with client(server.base_url) as remote:
        assert [f.id for f in remote.list_files()] == ["file-a"]


def test_download_shorter_than_the_file_bytes_is_an_error(odd_server: Any) -> None:
    """Content of 5 bytes for a file that claims 10 raises PermanentError naming both."""

    def liar(h: Handler, r: Request, n: int) -> None:
        if r.path.endswith("/content"):
            h.answer(200, b"12345")
        else:
            h.answer(200, file_json("file-x", size=10))

    server = odd_server(liar)
    with client(server.base_url) as remote, pytest.raises(PermanentError, match=r"5 bytes.*10"):
        remote.download("file-x", io.BytesIO())
    content = [r for r in server.requests if r.path.endswith("/content")]
    assert content[0].headers["accept"] == "application/binary"


def test_broken_download_is_retried_from_the_start(odd_server: Any) -> None:
    """A transfer cut off half-way is retried; the output holds the content exactly once."""
    content = b"0123456789" * 100

    def flaky(h: Handler, r: Request, n: int) -> None:
        if not r.path.endswith("/content"):
            h.answer(200, file_json("file-x", size=len(content)))
        elif sum(1 for q in h.server.requests if q.path.endswith("/content")) == 1:
            h.send_response(200)
            h.send_header("Content-Length", str(len(content)))
            h.end_headers()
            h.wfile.write(content[:500])
            h.wfile.flush()
            h.drop()
        else:
            h.answer(200, content)

    server = odd_server(flaky)
    out = io.BytesIO(b"keep:")
    out.seek(5)
    with client(server.base_url) as remote:
        assert remote.download("file-x", out) == len(content)
    assert out.getvalue() == b"keep:" + content


def test_broken_download_into_an_unseekable_output_is_not_retried(odd_server: Any) -> None:
    """Bytes already written to a pipe cannot be taken back: RetryableError, one try."""
    content = b"x" * 1000

    def cut(h: Handler, r: Request, n: int) -> None:
        if not r.path.endswith("/content"):
            h.answer(200, file_json("file-x", size=len(content)))
            return
        h.send_response(200)
        h.send_header("Content-Length", str(len(content)))
        h.end_headers()
        h.wfile.write(content[:500])
        h.wfile.flush()
        h.drop()

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.data = b""

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.data += bytes(b)
            return len(b)

    server = odd_server(cut)
    with client(server.base_url) as remote, pytest.raises(RetryableError):
        remote.download("file-x", Pipe())  # type: ignore[arg-type]
    assert sum(1 for r in server.requests if r.path.endswith("/content")) == 1


def test_upload_answer_lost_after_the_body_is_ambiguous(odd_server: Any, source: Path) -> None:
    """The server reads the whole upload then drops the connection: AmbiguousError, no retry."""
    server = odd_server(lambda h, r, n: h.drop())
    with client(server.base_url) as remote, pytest.raises(AmbiguousError):
        remote.upload(source, "a.txt", "user_data")
    assert len(server.requests) == 1
    assert b"hello" in (server.requests[0].body or b"")


def test_upload_read_timeout_after_the_body_is_ambiguous(odd_server: Any, source: Path) -> None:
    """No answer within the timeout after the body was sent: AmbiguousError, no retry."""
    release = threading.Event()
    server = odd_server(lambda h, r, n: release.wait(10))
    try:
        with client(server.base_url, timeout=0.5) as remote, pytest.raises(AmbiguousError):
            remote.upload(source, "a.txt", "user_data")
    finally:
        release.set()
    assert len(server.requests) == 1


def test_upload_refused_before_the_body_was_read_is_retried(
    odd_server: Any, tmp_path: Path
) -> None:
    """A connection dropped before the body could be sent proves nothing was stored: retried."""
    big = tmp_path / "big.bin"
    big.write_bytes(b"z" * (16 * 1024 * 1024))  # more than socket buffers hold

    def first_drop(h: Handler, r: Request, n: int) -> None:
        if n == 1:
            h.drop()
        else:
            h.read_body()
            h.answer(200, file_json("file-ok", size=big.stat().st_size, filename="big.bin"))

    server = odd_server(first_drop, read_post_body=False)
    with client(server.base_url) as remote:
        assert remote.upload(big, "big.bin", "user_data").id == "file-ok"
    assert len(server.requests) == 2


def test_upload_answered_with_something_that_is_not_a_file_is_ambiguous(
    odd_server: Any, source: Path
) -> None:
    """A 200 whose body is not a file object may still mean stored: AmbiguousError."""
    server = odd_server(lambda h, r, n: h.answer(200, b"<html>proxy</html>"))
    with client(server.base_url) as remote, pytest.raises(AmbiguousError):
        remote.upload(source, "a.txt", "user_data")
    assert len(server.requests) == 1


def test_read_timeout_on_a_get_is_retried(odd_server: Any) -> None:
    """A GET that stalls past the timeout is sent again (reads are safe to repeat)."""
    release = threading.Event()

    def stall_once(h: Handler, r: Request, n: int) -> None:
        if n == 1:
            release.wait(10)
            return
        h.answer(200, file_json("file-x"))

    server = odd_server(stall_once)
    try:
        with client(server.base_url, timeout=0.5) as remote:
            assert remote.retrieve("file-x").id == "file-x"
    finally:
        release.set()
    assert len(server.requests) == 2


def test_connection_refused_is_retried_then_raised(odd_server: Any) -> None:
    """Nobody listening: RetryableError after max_attempts tries, each retry logged."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        capture_logs() as logs,
        client(f"http://127.0.0.1:{port}/v1", max_attempts=3) as remote,
        pytest.raises(RetryableError, match="cannot connect"),
    ):
        remote.retrieve("file-x")
    retries = [e for e in logs if e["event"] == "remote_retry"]
    assert [e["attempt"] for e in retries] == [1, 2]


def test_a_429_without_retry_after_still_pauses_then_retries(odd_server: Any, source: Path) -> None:
    """A bare 429 pauses requests for the default pause, then the upload goes through."""

    def limit_once(h: Handler, r: Request, n: int) -> None:
        if n == 1:
            h.answer(
                429, {"error": {"message": "slow", "type": "requests", "param": None, "code": None}}
            )
        else:
            h.answer(200, file_json("file-ok"))

    server = odd_server(limit_once)
    with client(server.base_url) as remote:
        assert remote.upload(source, "a.txt", "user_data").id == "file-ok"
    first, second = server.requests
    assert second.at - first.at >= 1.0


def test_401_that_echoes_the_key_is_fatal_and_the_key_stays_out(
    odd_server: Any, source: Path
) -> None:
    """A server quoting the key in its 401 message: FatalError, key scrubbed, one request."""

    def echo(h: Handler, r: Request, n: int) -> None:
        key = r.headers.get("authorization", "").removeprefix("Bearer ")
        message = f"Incorrect API key provided: {key}. Also sk-abc***xyz."
        h.answer(
            401,
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
        )

    server = odd_server(echo)
    with client(server.base_url) as remote, pytest.raises(FatalError) as info:
        remote.upload(source, "a.txt", "user_data")
    assert KEY not in str(info.value)
    assert "sk-abc" not in str(info.value)
    assert "key" in str(info.value)
    assert info.value.code == "invalid_api_key"
    assert len(server.requests) == 1


def test_403_is_fatal(odd_server: Any) -> None:
    """A 403 (key without the rights) stops at once with FatalError."""
    server = odd_server(lambda h, r, n: h.answer(403, {"error": {"message": "Missing scopes"}}))
    with client(server.base_url) as remote, pytest.raises(FatalError, match="Missing scopes"):
        remote.delete("file-x")
    assert len(server.requests) == 1


def test_azure_and_organization_settings_reach_every_request(odd_server: Any, source: Path) -> None:
    """Azure api-key/api-version, org/project headers on every request; raw UTF-8 filename."""

    def ok(h: Handler, r: Request, n: int) -> None:
        if r.method == "GET" and "/content" in r.path:
            h.answer(200, b"hello")
        elif r.method == "GET" and r.path.split("?")[0].endswith("/files"):
            h.answer(200, {"object": "list", "data": [], "has_more": False})
        elif r.method == "DELETE":
            h.answer(200, {"id": "file-x", "object": "file", "deleted": True})
        else:
            h.answer(200, file_json("file-x"))

    server = odd_server(ok)
    settings = RemoteSettings(
        base_url=server.base_url,
        api_key="azure-secret",
        auth_header="api-key",
        azure_api_version="2024-10-21",
        organization="org-1",
        project="proj_2",
    )
    with HttpFilesRemote(settings) as remote:
        remote.upload(source, "dir/ä.txt", "user_data")
        list(remote.list_files())
        remote.download("file-x", io.BytesIO())
        remote.delete("file-x")
    assert len(server.requests) == 5
    for request in server.requests:
        assert "api-version=2024-10-21" in request.path
        assert request.headers["api-key"] == "azure-secret"
        assert "authorization" not in request.headers
        assert request.headers["openai-organization"] == "org-1"
        assert request.headers["openai-project"] == "proj_2"
    upload_body = server.requests[0].body or b""
    assert 'filename="dir/ä.txt"'.encode() in upload_body
    assert b'name="purpose"\r\n\r\nuser_data' in upload_body


def test_a_redirect_is_not_followed_and_is_permanent(odd_server: Any, source: Path) -> None:
    """A 307 (wrong base URL, http->https) is PermanentError naming the target; one request."""
    target = {"Location": "https://elsewhere.invalid/v1/files"}
    server = odd_server(lambda h, r, n: h.answer(307, b"", target))
    with client(server.base_url) as remote, pytest.raises(PermanentError, match="elsewhere"):
        remote.upload(source, "a.txt", "user_data")
    assert len(server.requests) == 1


def test_a_file_that_grows_while_it_is_sent_is_sent_again_whole(
    odd_server: Any, tmp_path: Path
) -> None:
    """Growth mid-upload aborts the body before its end (nothing stored) and retries."""
    path = tmp_path / "growing.log"
    path.write_bytes(b"a" * (16 * 1024 * 1024))  # more than socket buffers hold

    def grow_first(h: Handler, r: Request, n: int) -> None:
        if n == 1:
            with open(path, "ab") as log:
                log.write(b"tail")
            h.rfile.read(int(h.headers["content-length"]))  # short: the client gives up
            h.drop()
            return
        body = h.read_body()
        r.body = body
        h.answer(200, file_json("file-ok", size=path.stat().st_size, filename="growing.log"))

    server = odd_server(grow_first, read_post_body=False)
    with capture_logs() as logs, client(server.base_url) as remote:
        assert remote.upload(path, "growing.log", "user_data").bytes == 16 * 1024 * 1024 + 4
    assert len(server.requests) == 2
    assert [e["error"] for e in logs if e["event"] == "remote_retry"] == [
        "upload of growing.log: the file changed while it was sent (grew beyond 16777216 bytes)"
    ]
    assert b"a" * 1000 + b"tail\r\n" in (server.requests[1].body or b"")
