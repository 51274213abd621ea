"""`syncd serve` over plain HTTP: validation, paging, storage, persistence, concurrency."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from typing import Any

import httpx
import pytest
from apispec import validate
from serverproc import ServerProcess


def upload(
    server: ServerProcess,
    content: bytes,
    *,
    filename: str = "f.txt",
    purpose: str = "user_data",
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/files",
        headers=server.headers(),
        data={"purpose": purpose, **(extra or {})},
        files={"file": (filename, content)},
        timeout=60,
    )


def created_id(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    validate("OpenAIFile", body)
    file_id: str = body["id"]
    return file_id


def list_page(server: ServerProcess, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/files", headers=server.headers(), params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    validate("ListFilesResponse", page)
    return page


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    validate("ErrorResponse", body)
    error: dict[str, Any] = body["error"]
    return error


def multipart_file_first(filename: str, content: bytes, purpose: str) -> tuple[bytes, str]:
    """A form with the file part before `purpose` (curl -F file=@x -F purpose=y order)."""
    boundary = "syncdtestboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + content
    body += (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
        f"{purpose}\r\n--{boundary}--\r\n"
    ).encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_purpose_after_file_still_validates_jsonl(server: ServerProcess) -> None:
    """With the purpose sent after the file, a bad JSON line is still found and refused."""
    for content, status in ((b'{"a": 1}\n{oops\n', 400), (b'{"a": 1}\n', 200)):
        body, content_type = multipart_file_first("t.jsonl", content, "fine-tune")
        response = httpx.post(
            f"{server.base_url}/files",
            headers={**server.headers(), "content-type": content_type},
            content=body,
        )
        assert response.status_code == status, response.text
    assert len(server.blob_paths()) == 1


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        (b"", "empty"),
        (b'{"a": 1}\n\n{"b": 2}\n', "line 2 is empty"),
        (b'{"a": 1}\n[1, 2', "line 2 is not valid JSON"),
        (b"\xff\xfe\n", "line 1 is not valid JSON"),
    ],
)
def test_invalid_jsonl_is_refused_with_reason(
    server: ServerProcess, content: bytes, fault: str
) -> None:
    """Empty files, blank lines and broken JSON in a .jsonl batch file are 400s saying why."""
    error = error_of(upload(server, content, filename="b.jsonl", purpose="batch"), 400)
    assert fault in error["message"]
    assert error["param"] == "file"
    assert server.blob_paths() == []


@pytest.mark.parametrize("content", [b'{"a": 1}', b'{"a": 1}\r\n{"b": 2}\r\n', b'1\n"s"\nnull\n'])
def test_valid_jsonl_variants_are_accepted(server: ServerProcess, content: bytes) -> None:
    """No final newline, CRLF line ends and non-object JSON values are all valid lines."""
    created_id(upload(server, content, filename="ok.JSONL", purpose="evals"))


def test_expires_after_bounds(server: ServerProcess) -> None:
    """expires_after outside 3600..2592000 or with another anchor is a 400; inside is kept."""
    for anchor, seconds, param in (
        ("created_at", "3599", "expires_after.seconds"),
        ("created_at", "2592001", "expires_after.seconds"),
        ("created_at", "soon", "expires_after.seconds"),
        ("last_active_at", "3600", "expires_after.anchor"),
    ):
        extra = {"expires_after[anchor]": anchor, "expires_after[seconds]": seconds}
        assert error_of(upload(server, b"x", extra=extra), 400)["param"] == param
    extra = {"expires_after[anchor]": "created_at", "expires_after[seconds]": "2592000"}
    body = upload(server, b"x", extra=extra).json()
    assert body["expires_at"] == body["created_at"] + 2592000


def test_batch_files_expire_after_30_days_by_default(server: ServerProcess) -> None:
    """A batch file without expires_after gets expires_at = created_at + 30 days."""
    body = upload(server, b'{"custom_id": "1"}\n', filename="b.jsonl", purpose="batch").json()
    assert body["expires_at"] == body["created_at"] + 30 * 86400


def test_missing_parts_are_bad_requests(server: ServerProcess) -> None:
    """No purpose, no file, or a body that is not multipart: 400 naming what is wrong."""
    no_purpose = httpx.post(
        f"{server.base_url}/files", headers=server.headers(), files={"file": ("a", b"a")}
    )
    assert error_of(no_purpose, 400)["param"] == "purpose"
    no_file = httpx.post(
        f"{server.base_url}/files",
        headers=server.headers(),
        data={"purpose": "user_data"},
        files={"other": ("a", b"a")},
    )
    assert error_of(no_file, 400)["param"] == "file"
    not_multipart = httpx.post(
        f"{server.base_url}/files", headers=server.headers(), json={"purpose": "user_data"}
    )
    assert "multipart/form-data" in error_of(not_multipart, 400)["message"]
    assert server.blob_paths() == []


def test_list_parameters_are_validated(server: ServerProcess) -> None:
    """limit outside 1..10000, an unknown order or an unknown `after` id are 400s."""
    url = f"{server.base_url}/files"
    for params, param in (
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"order": "newest"}, "order"),
        ({"after": "file-neverexisted"}, "after"),
    ):
        response = httpx.get(url, headers=server.headers(), params=params)
        assert error_of(response, 400)["param"] == param
    assert list_page(server, limit=10000)["data"] == []


def test_content_is_exact_bytes_with_length(server: ServerProcess) -> None:
    """/content returns the stored bytes unchanged, as octet-stream with Content-Length."""
    payload = hashlib.sha256(b"seed").digest() * 5000 + b"\x00\r\n\xff"
    file_id = created_id(upload(server, payload, filename="bin.dat", purpose="vision"))
    response = httpx.get(f"{server.base_url}/files/{file_id}/content", headers=server.headers())
    assert response.status_code == 200
    assert response.content == payload
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(len(payload))


def test_utf8_filename_with_directories_is_kept(server: ServerProcess) -> None:
    """A relative path with `/` and non-ASCII letters comes back exactly as sent."""
    name = "dossier/été/naïve 1.txt"
    file_id = created_id(upload(server, b"x", filename=name))
    got = httpx.get(f"{server.base_url}/files/{file_id}", headers=server.headers()).json()
    assert got["filename"] == name


def test_delete_is_final_and_paging_survives_it(server: ServerProcess) -> None:
    """A deleted file is gone (second delete 404); a cursor at it still pages on."""
    ids = [created_id(upload(server, b"%d" % i)) for i in range(5)]
    first = list_page(server, limit=2, order="asc")
    assert [f["id"] for f in first["data"]] == ids[:2]
    url = f"{server.base_url}/files/{ids[1]}"
    assert httpx.delete(url, headers=server.headers()).status_code == 200
    error_of(httpx.delete(url, headers=server.headers()), 404)
    error_of(httpx.get(url, headers=server.headers()), 404)
    rest = list_page(server, limit=10, order="asc", after=first["last_id"])
    assert [f["id"] for f in rest["data"]] == ids[2:]
    assert len(server.blob_paths()) == 4


def test_paging_is_stable_when_files_share_a_second(server: ServerProcess) -> None:
    """Paging with limit=3 in both orders visits each of 40 quick uploads exactly once."""
    ids = [created_id(upload(server, b"x", filename=f"{i}.txt")) for i in range(40)]
    full = list_page(server, order="asc")["data"]
    assert [f["id"] for f in full] == ids  # ties on created_at keep upload order
    for order in ("asc", "desc"):
        seen: list[str] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 3, "order": order}
            if after:
                params["after"] = after
            page = list_page(server, **params)
            seen += [f["id"] for f in page["data"]]
            if not page["has_more"]:
                break
            after = page["last_id"]
        assert seen == (ids if order == "asc" else ids[::-1])


def test_size_limit_refuses_and_leaves_nothing(server_factory: Any) -> None:
    """With --max-bytes 1000, 1000 bytes are stored and 1001 get a 413 with no leftovers."""
    server = server_factory(max_bytes=1000)
    created_id(upload(server, b"a" * 1000))
    error = error_of(upload(server, b"a" * 1001), 413)
    assert error["code"] == "file_too_large"
    assert len(server.blob_paths()) == 1
    assert list((server.data_dir / "tmp").iterdir()) == []


def test_unknown_routes_answer_in_the_envelope(server: ServerProcess) -> None:
    """Unknown paths are 404 and wrong methods 405, both in the error envelope."""
    unknown = httpx.get(f"{server.base_url}/models", headers=server.headers())
    assert error_of(unknown, 404)["message"] == "Invalid URL (GET /v1/models)"
    error_of(httpx.put(f"{server.base_url}/files", headers=server.headers()), 405)


def test_a_key_is_required_even_when_any_key_is_accepted(server: ServerProcess) -> None:
    """Without --api-key any bearer works, but a request with no key at all is a 401."""
    response = httpx.get(f"{server.base_url}/files")
    assert "API key" in error_of(response, 401)["message"]
    ok = httpx.get(f"{server.base_url}/files", headers={"Authorization": "Bearer whatever"})
    assert ok.status_code == 200


def test_files_survive_restart_and_crash(server: ServerProcess) -> None:
    """After a graceful restart and after SIGKILL, every stored file and its bytes remain."""
    contents = {created_id(upload(server, b"v%d" % i * 100)): b"v%d" % i * 100 for i in range(3)}
    server.restart()
    contents[created_id(upload(server, b"after restart"))] = b"after restart"
    server.restart(kill=True)
    listed = {f["id"] for f in list_page(server)["data"]}
    assert listed == set(contents)
    for file_id, content in contents.items():
        assert server.stored_content(file_id) == content


def test_leftovers_of_an_interrupted_upload_are_cleaned_at_start(server: ServerProcess) -> None:
    """A temp file and an orphan blob (crash mid-upload) are removed when the server starts."""
    file_id = created_id(upload(server, b"keep"))
    server.stop()
    (server.data_dir / "tmp" / "half.part").write_bytes(b"half an upload")
    (server.data_dir / "blobs" / "file-orphanwithoutarow000").write_bytes(b"orphan")
    server.start()
    assert [p.name for p in server.blob_paths()] == [file_id]
    assert list((server.data_dir / "tmp").iterdir()) == []


def test_concurrent_uploads_all_land_with_distinct_ids(server: ServerProcess) -> None:
    """50 uploads from 50 threads at once: 50 distinct ids, all listed, all contents right."""
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(50)

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = created_id(upload(server, b"%04d" % i * 1000, filename=f"c{i}.txt"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(set(results.values())) == 50
    assert {f["id"] for f in list_page(server)["data"]} == set(results.values())
    for i in (0, 17, 49):
        assert server.stored_content(results[i]) == b"%04d" % i * 1000


def test_empty_file_is_refused_for_any_purpose(server: ServerProcess) -> None:
    """A 0-byte file is a 400 naming the file, and nothing is stored."""
    error = error_of(upload(server, b"", filename="nothing.txt", purpose="assistants"), 400)
    assert "nothing.txt" in error["message"] and error["code"] == "empty_file"
    assert server.blob_paths() == []


def test_an_upload_cut_short_leaves_no_temp_file(server: ServerProcess) -> None:
    """A client that disconnects mid-body leaves nothing in tmp/ and no file listed."""
    host, port = server.root_url.removeprefix("http://").split(":")
    body, content_type = multipart_file_first("cut.bin", b"x" * 4_000_000, "user_data")
    head = (
        f"POST /v1/files HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer k\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + body[:3_000_000])
        deadline = time.monotonic() + 10
        while not list((server.data_dir / "tmp").iterdir()):  # the upload has begun
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.01)
    deadline = time.monotonic() + 10
    while list((server.data_dir / "tmp").iterdir()):
        assert time.monotonic() < deadline, "temp file left behind"
        time.sleep(0.01)
    assert list_page(server)["data"] == []
    deadline = time.monotonic() + 10
    while (statuses := [r["status"] for r in server.stats()["requests"]])[:1] != [499]:
        assert time.monotonic() < deadline, statuses
        time.sleep(0.01)


def test_a_second_file_part_is_ignored(server: ServerProcess) -> None:
    """Of two `file` parts the first is stored and the second leaves no trace in tmp/."""
    response = httpx.post(
        f"{server.base_url}/files",
        headers=server.headers(),
        data={"purpose": "user_data"},
        files=[("file", ("one.txt", b"one")), ("file", ("two.txt", b"two"))],
    )
    assert response.json()["filename"] == "one.txt"
    assert len(server.blob_paths()) == 1
    assert list((server.data_dir / "tmp").iterdir()) == []


def test_clock_offset_shifts_created_at_expiry_and_the_date_header(tmp_path: Any) -> None:
    """`--clock-offset 600` stamps files and dates answers 10 minutes ahead of this host."""
    from email.utils import parsedate_to_datetime

    with ServerProcess(tmp_path / "store", extra_args=["--clock-offset", "600"]) as server:
        before = time.time()
        response = upload(
            server,
            b"x",
            extra={"expires_after[anchor]": "created_at"} | {"expires_after[seconds]": "3600"},
        )
        after = time.time()
        body = response.json()
        assert before + 600 - 1 <= body["created_at"] <= after + 600
        assert body["expires_at"] == body["created_at"] + 3600
        dates = [r.headers["date"] for r in (response, httpx.get(server.root_url + "/nope"))]
        assert len(response.headers.get_list("date")) == 1
        for date in dates:
            stamp = parsedate_to_datetime(date).timestamp()
            assert before + 600 - 1 <= stamp <= time.time() + 600
        assert list_page(server)["data"][0]["id"] == body["id"]  # not expired early
