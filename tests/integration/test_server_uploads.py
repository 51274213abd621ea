"""The Uploads API of `syncd serve` through the official SDK, validated against the spec."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from apispec import validate
from serverproc import ServerProcess

from syncd.api import MAX_PART_BYTES


def sdk(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url, api_key=server.client_key, max_retries=0, timeout=60
    )


def raw_json(response: Any) -> Any:
    return json.loads(response.http_response.content)


def start_upload(
    client: openai.OpenAI, size: int, filename: str = "big.bin", purpose: str = "assistants"
) -> dict[str, Any]:
    upload = raw_json(
        client.uploads.with_raw_response.create(
            bytes=size,
            filename=filename,
            mime_type="application/octet-stream",
            purpose=purpose,  # type: ignore[arg-type]
        )
    )
    validate("Upload", upload)
    return upload  # type: ignore[no-any-return]


def add_part(client: openai.OpenAI, upload_id: str, data: bytes) -> str:
    part = raw_json(client.uploads.parts.with_raw_response.create(upload_id, data=data))
    validate("UploadPart", part)
    assert part["upload_id"] == upload_id and part["object"] == "upload.part"
    return str(part["id"])


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    validate("ErrorResponse", body)
    return body["error"]  # type: ignore[no-any-return]


def test_parts_sent_in_parallel_assemble_in_the_given_order(server: ServerProcess) -> None:
    """Parts uploaded concurrently in any order become one File in part_ids order, md5 checked."""
    client = sdk(server)
    chunks = [bytes([65 + i]) * (1000 + i) for i in range(5)]
    whole = b"".join(chunks)
    upload = start_upload(client, len(whole))
    assert upload["status"] == "pending" and upload["file"] is None
    assert upload["expires_at"] == upload["created_at"] + 3600
    with ThreadPoolExecutor(5) as pool:
        part_ids = list(pool.map(lambda c: add_part(client, upload["id"], c), chunks[::-1]))[::-1]
    done = raw_json(
        client.uploads.with_raw_response.complete(
            upload["id"], part_ids=part_ids, md5=hashlib.md5(whole).hexdigest()
        )
    )
    validate("Upload", done)
    assert done["status"] == "completed"
    assert done["file"]["bytes"] == len(whole) and done["file"]["filename"] == "big.bin"
    assert server.stored_content(done["file"]["id"]) == whole
    assert [f.id for f in client.files.list()] == [done["file"]["id"]]
    assert list((server.data_dir / "uploads").iterdir()) == []  # parts are gone


def test_full_parts_sent_in_order_become_the_file_without_a_copy(server: ServerProcess) -> None:
    """64 MiB parts in order are written where they belong in one file: complete checks
    the md5 and lands that very file (same inode, no second copy), leaving no part."""
    client = sdk(server)
    full = bytes(range(256)) * (MAX_PART_BYTES // 256)
    tail = b"the last part"
    upload = start_upload(client, len(full) + len(tail))
    part_ids = [add_part(client, upload["id"], full), add_part(client, upload["id"], tail)]
    parts_inode = (server.data_dir / "uploads" / upload["id"] / "data").stat().st_ino
    with pytest.raises(openai.BadRequestError) as caught:  # md5 hashed as the parts landed
        client.uploads.complete(upload["id"], part_ids=part_ids, md5="0" * 32)
    assert error_of(caught.value)["param"] == "md5"
    done = client.uploads.complete(
        upload["id"], part_ids=part_ids, md5=hashlib.md5(full + tail).hexdigest()
    )
    assert done.file is not None
    assert (server.data_dir / "blobs" / done.file.id).stat().st_ino == parts_inode
    assert server.stored_content(done.file.id) == full + tail
    assert list((server.data_dir / "uploads").iterdir()) == []
    assert list((server.data_dir / "tmp").iterdir()) == []


def test_parts_around_a_failed_one_assemble_and_the_failed_bytes_go(
    server: ServerProcess,
) -> None:
    """A part cut short between two good ones leaves nothing: the good ones (copied,
    their slots not in order) make the file, and the parts' data is removed."""
    client = sdk(server)
    upload = start_upload(client, 6)
    first = add_part(client, upload["id"], b"abc")
    cut = (
        b'--bnd\r\nContent-Disposition: form-data; name="data"; filename="b"\r\n\r\n' + b"x" * 5000
    )
    response = httpx.post(
        f"{server.base_url}/uploads/{upload['id']}/parts",
        content=cut,
        headers={
            "Authorization": f"Bearer {server.client_key}",
            "Content-Type": "multipart/form-data; boundary=bnd",
        },
    )
    assert response.status_code == 400
    data = server.data_dir / "uploads" / upload["id"] / "data"
    assert data.stat().st_size == 3  # the cut part's bytes are trimmed away
    second = add_part(client, upload["id"], b"def")
    done = client.uploads.complete(upload["id"], part_ids=[first, second])
    assert done.file is not None
    assert server.stored_content(done.file.id) == b"abcdef"
    assert list((server.data_dir / "uploads").iterdir()) == []


def test_sdk_chunked_helper_works_end_to_end(server: ServerProcess, tmp_path: Path) -> None:
    """The SDK's upload_file_chunked with a small part size yields the same bytes back."""
    source = tmp_path / "train.jsonl"
    source.write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(2000)))
    client = sdk(server)
    upload = client.uploads.upload_file_chunked(
        file=source, mime_type="text/jsonl", purpose="fine-tune", part_size=5000
    )
    assert upload.status == "completed" and upload.file is not None
    assert server.stored_content(upload.file.id) == source.read_bytes()
    assert server.stats()["counts"]["upload_part"] > 3


def test_complete_checks_md5_and_byte_count_and_stays_pending(server: ServerProcess) -> None:
    """A wrong md5 or byte count is a 400 and the upload can still be completed rightly."""
    client = sdk(server)
    upload = start_upload(client, 10)
    first = add_part(client, upload["id"], b"01234")
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.complete(upload["id"], part_ids=[first])
    assert "10 bytes" in error_of(caught.value)["message"]
    second = add_part(client, upload["id"], b"56789")
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.complete(upload["id"], part_ids=[first, second], md5="0" * 32)
    assert error_of(caught.value)["param"] == "md5"
    done = client.uploads.complete(
        upload["id"], part_ids=[first, second], md5=hashlib.md5(b"0123456789").hexdigest()
    )
    assert done.status == "completed"
    assert server.blob_paths() and len(server.blob_paths()) == 1


def test_parts_of_another_upload_are_refused(server: ServerProcess) -> None:
    """complete with a part id from a different upload is a 400 naming the part."""
    client = sdk(server)
    one, two = start_upload(client, 3), start_upload(client, 3)
    foreign = add_part(client, two["id"], b"abc")
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.complete(one["id"], part_ids=[foreign])
    assert foreign in error_of(caught.value)["message"]


def test_cancel_ends_an_upload_for_good(server: ServerProcess) -> None:
    """A cancelled upload takes no parts and cannot complete; cancel again is harmless."""
    client = sdk(server)
    upload = start_upload(client, 3)
    part = add_part(client, upload["id"], b"abc")
    cancelled = raw_json(client.uploads.with_raw_response.cancel(upload["id"]))
    validate("Upload", cancelled)
    assert cancelled["status"] == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(upload["id"], data=b"more")
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload["id"], part_ids=[part])
    assert client.uploads.cancel(upload["id"]).status == "cancelled"
    assert server.blob_paths() == []
    assert list((server.data_dir / "uploads").iterdir()) == []


def test_unknown_upload_is_not_found(server: ServerProcess) -> None:
    """parts, complete and cancel on an unknown upload id raise NotFoundError."""
    client = sdk(server)
    with pytest.raises(openai.NotFoundError):
        client.uploads.parts.create("upload_nope", data=b"x")
    with pytest.raises(openai.NotFoundError):
        client.uploads.complete("upload_nope", part_ids=[])
    with pytest.raises(openai.NotFoundError) as caught:
        client.uploads.cancel("upload_nope")
    assert error_of(caught.value)["message"] == "No such Upload object: upload_nope"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"purpose": "user_data"}, "purpose"),
        ({"purpose": "fine-tune", "filename": "train.csv"}, "filename"),
        ({"bytes": 0}, "bytes"),
        ({"bytes": 8 * 1024**3 + 1}, "bytes"),
    ],
)
def test_create_is_validated(server: ServerProcess, kwargs: dict[str, Any], param: str) -> None:
    """Purposes outside the Uploads API, wrong extensions and bad sizes are 400s."""
    args: dict[str, Any] = {
        "bytes": 10,
        "filename": "a.jsonl",
        "mime_type": "text/jsonl",
        "purpose": "batch",
        **kwargs,
    }
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).uploads.create(**args)
    assert error_of(caught.value)["param"] == param


def test_jsonl_is_checked_across_part_boundaries(server: ServerProcess) -> None:
    """A fine-tune upload whose assembled lines are not all JSON is refused at complete."""
    client = sdk(server)
    chunks = [b'{"a": 1}\n{"b"', b": 2}\n{oops}\n"]
    upload = start_upload(client, sum(map(len, chunks)), "t.jsonl", "fine-tune")
    part_ids = [add_part(client, upload["id"], c) for c in chunks]
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.complete(upload["id"], part_ids=part_ids)
    assert "line 3" in error_of(caught.value)["message"]


def test_plain_form_field_data_is_accepted(server: ServerProcess) -> None:
    """`curl -F data=...` (a field without filename) is taken as the part's bytes."""
    client = sdk(server)
    upload = start_upload(client, 5)
    response = httpx.post(
        f"{server.base_url}/uploads/{upload['id']}/parts",
        headers=server.headers(),
        data={"data": "hello"},
        files={"unused": ("x", b"")},  # forces multipart/form-data
    )
    assert response.status_code == 200, response.text
    done = client.uploads.complete(upload["id"], part_ids=[response.json()["id"]])
    assert done.file is not None
    assert server.stored_content(done.file.id) == b"hello"


def test_uploads_survive_a_restart(server: ServerProcess) -> None:
    """Parts sent before a restart still count after it."""
    client = sdk(server)
    upload = start_upload(client, 6)
    first = add_part(client, upload["id"], b"abc")
    server.restart(kill=True)
    client = sdk(server)
    second = add_part(client, upload["id"], b"def")
    done = client.uploads.complete(upload["id"], part_ids=[first, second])
    assert done.file is not None
    assert server.stored_content(done.file.id) == b"abcdef"


def test_an_upload_past_its_hour_is_expired(server: ServerProcess) -> None:
    """An upload whose hour has passed refuses parts and loses the ones it had."""
    client = sdk(server)
    upload = start_upload(client, 6)
    part = add_part(client, upload["id"], b"abc")
    server.stop()
    with sqlite3.connect(server.data_dir / "files.db") as db:  # an hour later, as on disk
        db.execute(
            "UPDATE uploads SET created_at = created_at - 3601, expires_at = expires_at - 3601"
        )
    server.start()
    assert list((server.data_dir / "uploads").iterdir()) == []
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.complete(upload["id"], part_ids=[part])
    assert "expired" in error_of(caught.value)["message"]


@pytest.mark.slow
def test_a_part_over_64_mib_is_refused(server: ServerProcess) -> None:
    """A part of 64 MiB + 1 byte is a 413 and leaves nothing behind; 64 MiB is fine."""
    client = sdk(server)
    limit = 64 * 1024 * 1024
    upload = start_upload(client, limit)
    with pytest.raises(openai.APIStatusError) as caught:
        client.uploads.parts.create(upload["id"], data=b"\0" * (limit + 1))
    assert caught.value.status_code == 413
    assert list((server.data_dir / "tmp").iterdir()) == []
    part = add_part(client, upload["id"], b"\0" * limit)
    assert client.uploads.complete(upload["id"], part_ids=[part]).status == "completed"


def test_a_lost_complete_answer_still_completes(server: ServerProcess) -> None:
    """With lost answers on, complete gives a 502 yet the File exists; a retry says so."""
    client = sdk(server)
    upload = start_upload(client, 3)
    part = add_part(client, upload["id"], b"abc")
    server.set_faults({"lost_answer_rate": 1.0, "routes": ["upload_complete"]})
    with pytest.raises(openai.InternalServerError) as caught:
        client.uploads.complete(upload["id"], part_ids=[part])
    assert caught.value.status_code == 502
    server.set_faults(None)
    with pytest.raises(openai.BadRequestError) as retried:
        client.uploads.complete(upload["id"], part_ids=[part])
    assert "'completed'" in error_of(retried.value)["message"]
    assert [f.filename for f in client.files.list()] == ["big.bin"]


def test_an_oversized_json_body_is_refused(server: ServerProcess) -> None:
    """A JSON body above 1 MiB is a 413, read in bounded memory."""
    response = httpx.post(
        f"{server.base_url}/uploads",
        headers={**server.headers(), "content-type": "application/json"},
        content=b'{"filename": "' + b"a" * (2 * 1024 * 1024) + b'"}',
    )
    assert response.status_code == 413
    validate("ErrorResponse", response.json())
