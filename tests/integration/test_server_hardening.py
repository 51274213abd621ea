"""`syncd serve` against hostile and unlucky requests (issue 14): cut bodies, extra parts,
oversized forms, odd values, a full disk, file modes. Real HTTP on loopback, raw sockets
where a well-behaved client cannot send what is tested."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from apispec import validate
from serverproc import ServerProcess

from syncd.errors import Verdict, classify_status

MIB = 1024 * 1024


def address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.root_url.removeprefix("http://").split(":")
    return host, int(port)


def read_answer(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 answer read from ``sock``."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def raw_request(server: ServerProcess, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(address(server)) as sock:
        sock.sendall(data)
        return read_answer(sock)


def post_head(path: str, content_type: str, length: int, key: str = "k") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def form(parts: list[tuple[str, str | None, bytes]], boundary: str = "bnd") -> bytes:
    """A multipart body of (name, filename, data) parts, with its closing boundary."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def envelope(body: bytes) -> dict[str, Any]:
    parsed = json.loads(body)
    validate("ErrorResponse", parsed)
    error: dict[str, Any] = parsed["error"]
    return error


def tmp_files(server: ServerProcess) -> list[Path]:
    return list((server.data_dir / "tmp").iterdir())


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def settled_fds(server: ServerProcess) -> int:
    """The server's descriptor count once it has stopped changing for a moment."""
    last, stable_since = server.open_fds(), time.monotonic()
    while time.monotonic() - stable_since < 0.3:
        time.sleep(0.05)
        now = server.open_fds()
        if now != last:
            last, stable_since = now, time.monotonic()
    return last


def sdk(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=server.client_key, max_retries=0)


# --- bodies and forms ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/files", "/v1/uploads/{upload}/parts"])
def test_a_body_without_its_closing_boundary_is_a_400_and_stores_nothing(
    server: ServerProcess, path: str
) -> None:
    """A form that ends mid-file (Content-Length honest, no closing boundary) is refused."""
    upload = sdk(server).uploads.create(
        bytes=10, filename="u.bin", mime_type="application/octet-stream", purpose="assistants"
    )
    whole = form([("purpose", None, b"user_data"), ("file", "a.txt", b"hello half")])
    whole = whole.replace(b'name="file"', b'name="data"') if "uploads" in path else whole
    cut = whole[: whole.rindex(b"\r\n--bnd--")]
    target = path.format(upload=upload.id)
    status, _, body = raw_request(
        server, post_head(target, "multipart/form-data; boundary=bnd", len(cut)) + cut
    )
    assert status == 400
    assert "closing boundary" in envelope(body)["message"]
    assert server.blob_paths() == [] and tmp_files(server) == []
    assert list((server.data_dir / "uploads" / upload.id).iterdir()) == []
    status, _, _ = raw_request(
        server, post_head(target, "multipart/form-data; boundary=bnd", len(whole)) + whole
    )
    assert status == 200  # the same form, whole, is fine


def test_extra_data_parts_leave_no_temp_file_or_descriptor(server: ServerProcess) -> None:
    """20 part requests of 6 `data` parts each: the first part of each is kept, and the
    server holds as many descriptors afterwards as before, with tmp/ empty."""
    client = sdk(server)
    upload = client.uploads.create(
        bytes=20 * 5, filename="u.bin", mime_type="application/octet-stream", purpose="vision"
    )
    with httpx.Client(timeout=30) as http:  # warm up: the first requests open what stays open
        http.get(f"{server.base_url}/files", headers=server.headers())
    baseline = settled_fds(server)
    part_ids = []
    with httpx.Client(timeout=30) as http:
        for i in range(20):
            parts = [
                ("data", f"p{k}", b"%05d" % i if k == 0 else b"extra" * 1000) for k in range(6)
            ]
            response = http.post(
                f"{server.base_url}/uploads/{upload.id}/parts",
                headers={**server.headers(), "content-type": "multipart/form-data; boundary=bnd"},
                content=form(parts),
            )
            assert response.status_code == 200, response.text
            part_ids.append(response.json()["id"])
    assert tmp_files(server) == []
    assert settled_fds(server) <= baseline
    done = client.uploads.complete(upload.id, part_ids=part_ids)
    assert done.file is not None
    assert server.stored_content(done.file.id) == b"".join(b"%05d" % i for i in range(20))


def test_too_many_parts_or_too_much_field_data_are_400s(server: ServerProcess) -> None:
    """17 parts, or fields over 64 KiB together, are refused; nothing is kept."""
    purpose = ("purpose", None, b"user_data")
    cases = {
        "parts": form([purpose] + [(f"x{i}", None, b"1") for i in range(16)]),
        "fields": form(
            [purpose, ("a", None, b"x" * 40_000), ("b", None, b"x" * 30_000), ("file", "f", b"d")]
        ),
    }
    for expected, body in cases.items():
        status, _, answer = raw_request(
            server, post_head("/v1/files", "multipart/form-data; boundary=bnd", len(body)) + body
        )
        assert status == 400, expected
        assert expected in envelope(answer)["message"]
    assert server.blob_paths() == [] and tmp_files(server) == []


def test_1500_fields_of_60_kb_are_refused_in_bounded_memory(server: ServerProcess) -> None:
    """A 90 MB form of 1,500 fields is a 400 and the server's peak memory barely moves."""
    baseline = server.peak_rss_bytes()
    field = b"v" * 60_000

    def body() -> Iterator[bytes]:
        for i in range(1500):
            yield f'--bnd\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\n'.encode()
            yield field + b"\r\n"
        yield b"--bnd--\r\n"

    response = httpx.post(
        f"{server.base_url}/files",
        headers={**server.headers(), "content-type": "multipart/form-data; boundary=bnd"},
        content=body(),
        timeout=120,
    )
    assert response.status_code == 400
    assert server.peak_rss_bytes() - baseline < 16 * MIB
    assert tmp_files(server) == []


# --- odd values: always a 4xx in the envelope, never a 500 -----------------------------


def _json_post(path: str, payload: bytes) -> bytes:
    return post_head(path, "application/json", len(payload)) + payload


def _form_post(body: bytes, content_type: str = "multipart/form-data; boundary=bnd") -> bytes:
    return post_head("/v1/files", content_type, len(body)) + body


def _upload(expires_after: bytes) -> bytes:
    return _json_post(
        "/v1/uploads",
        b'{"filename": "a", "purpose": "vision", "bytes": 3, "mime_type": "x",'
        b' "expires_after": ' + expires_after + b"}",
    )


_DEEP = b"[" * 100_000 + b"]" * 100_000
ODD_REQUESTS: dict[str, bytes] = {
    "300-byte boundary": _form_post(b"x" * 10, "multipart/form-data; boundary=" + "B" * 300),
    "empty boundary": _form_post(b"--\r\n", 'multipart/form-data; boundary=""'),
    "seconds as a list": _upload(b'{"anchor": "created_at", "seconds": [3600]}'),
    "seconds as a float": _upload(b'{"anchor": "created_at", "seconds": 3600.5}'),
    "seconds as a string": _upload(b'{"anchor": "created_at", "seconds": " 3600"}'),
    "anchor as an object": _upload(b'{"anchor": {"x": 1}, "seconds": 3600}'),
    "deeply nested JSON": _json_post("/v1/uploads", _DEEP),
    "nested JSON in complete": _json_post(
        "/v1/uploads/upload_x/complete", b'{"part_ids": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    ),
    "a 5,000-digit integer": _json_post("/v1/uploads", b'{"bytes": ' + b"9" * 5000 + b"}"),
    "JSON that is not UTF-8": _json_post("/v1/uploads", b'{"filename": "\xff"}'),
    "form seconds as a list": _form_post(
        form(
            [
                ("purpose", None, b"batch"),
                ("expires_after[anchor]", None, b"created_at"),
                ("expires_after[seconds]", None, b"[3600]"),
                ("file", "a.jsonl", b"1\n"),
            ]
        )
    ),
    "a part without a name": _form_post(
        b"--bnd\r\nContent-Disposition: form-data\r\n\r\nx\r\n--bnd--\r\n"
    ),
    "limit with an underscore": b"GET /v1/files?limit=1_0 HTTP/1.1\r\nHost: x\r\n"
    b"Authorization: Bearer k\r\n\r\n",
    "a non-ASCII path": b"GET /v1/files/\xff\xfe HTTP/1.1\r\nHost: x\r\n"
    b"Authorization: Bearer k\r\n\r\n",
    "not HTTP at all": b"GARBAGE\r\n\r\n",
    "a 20 KiB header": b"GET /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
    b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    "faults nested too deeply": b"PUT /_syncd/faults HTTP/1.1\r\nHost: x\r\n"
    b"Authorization: Bearer k\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(_DEEP)}\r\n\r\n".encode()
    + _DEEP,
}


@pytest.mark.parametrize("name", sorted(ODD_REQUESTS))
def test_odd_inputs_are_4xx_envelopes_never_500(server: ServerProcess, name: str) -> None:
    """Each odd request gets a 4xx with the error envelope, and no traceback is logged."""
    status, headers, body = raw_request(server, ODD_REQUESTS[name])
    assert 400 <= status < 500, (status, body)
    assert headers["content-type"] == "application/json"
    envelope(body)
    server.stop()  # flush the log
    assert "Traceback" not in server.log_tail(200)
    assert "internal_error" not in server.log_tail(200)


# --- a full disk ---------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where``; skips the test where that is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _full_disk_answers(server: ServerProcess, big: int) -> None:
    """A file too big for the disk is a 507 (retryable), a part too; small ones still land."""
    files = server.base_url + "/files"
    refused = httpx.post(
        files, headers=server.headers(), data={"purpose": "user_data"},
        files={"file": ("big.bin", b"x" * big)}, timeout=60,
    )  # fmt: skip
    assert refused.status_code == 507, refused.text
    assert envelope(refused.content)["code"] == "insufficient_storage"
    assert classify_status(507) is Verdict.RETRYABLE
    assert server.blob_paths() == [] and tmp_files(server) == []
    client = sdk(server)
    upload = client.uploads.create(bytes=big, filename="u.bin", mime_type="x", purpose="vision")
    with pytest.raises(openai.APIStatusError) as caught:
        client.uploads.parts.create(upload.id, data=b"y" * big)
    assert caught.value.status_code == 507
    assert tmp_files(server) == []
    small = httpx.post(
        files, headers=server.headers(), data={"purpose": "user_data"},
        files={"file": ("small.txt", b"fits")}, timeout=60,
    )  # fmt: skip
    assert small.status_code == 200, small.text
    assert "Traceback" not in server.log_tail(200)


def test_a_full_disk_is_a_507_and_leaves_nothing(tmp_path: Path) -> None:
    """On a 4 MiB tmpfs (ENOSPC) an 8 MiB upload is a 507, not the old 400."""
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        server = ServerProcess(disk / "store", log_path=tmp_path / "serve.log")
        try:
            server.start()
            _full_disk_answers(server, 8 * MIB)
        finally:
            server.stop()


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * MIB, 2 * MIB))


def test_a_file_size_limit_is_a_507_and_leaves_nothing(tmp_path: Path) -> None:
    """Under RLIMIT_FSIZE (EFBIG, works without root) a 3 MiB upload is a 507 as well."""
    server = ServerProcess(tmp_path / "store", preexec_fn=_limit_file_size)
    try:
        server.start()
        _full_disk_answers(server, 3 * MIB)
    finally:
        server.stop()


# --- the store's modes -----------------------------------------------------------------


def test_the_store_is_private(tmp_path: Path) -> None:
    """A new store's directories are 0700 and its files 0600, even under umask 000."""
    data_dir = tmp_path / "store"
    server = ServerProcess(data_dir, preexec_fn=lambda: os.umask(0), log_path=tmp_path / "l")
    try:
        server.start()
        file_id = sdk(server).files.create(file=("a.txt", b"secret"), purpose="user_data").id
        sdk(server).uploads.create(bytes=3, filename="u", mime_type="x", purpose="vision")

        def mode(path: Path) -> int:
            return stat.S_IMODE(path.stat().st_mode)

        for directory in (data_dir, data_dir / "blobs", data_dir / "tmp"):
            assert mode(directory) == 0o700, directory
        uploads = data_dir / "uploads"
        assert {mode(d) for d in (uploads, *uploads.iterdir())} == {0o700}
        assert mode(data_dir / "blobs" / file_id) == 0o600
        for name in ("files.db", "files.db-wal", "files.db-shm", ".lock"):
            if (data_dir / name).exists():
                assert mode(data_dir / name) == 0o600, name
    finally:
        server.stop()
