"""HttpUploadsApi and MultipartUploader against a real `syncd serve`: parts, md5, lost
answers, expired and unknown uploads, cancel."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import ServerProcess

from syncd.errors import AmbiguousError, PermanentError, RetryableError, UploadGoneError
from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.retry import RetryPolicy
from syncd.remote.settings import RemoteSettings
from syncd.remote.uploads_http import HttpUploadsApi
from syncd.state.ledger import Ledger
from syncd.sync.multipart import MultipartJob, MultipartUploader

CONTENT = os.urandom(10_000)


@pytest.fixture
def remote(server: ServerProcess) -> Iterator[HttpFilesRemote]:
    settings = RemoteSettings(base_url=server.base_url, api_key=server.client_key)
    policy = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.05)
    with HttpFilesRemote(settings, policy=policy) as client:
        yield client


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(CONTENT)
    return path


def api_of(remote: HttpFilesRemote) -> HttpUploadsApi:
    api = remote.uploads_api()
    assert isinstance(api, HttpUploadsApi)
    return api


def send_parts(api: HttpUploadsApi, upload_id: str, path: Path, part: int) -> list[str]:
    return [
        api.add_part(upload_id, path, offset, min(part, len(CONTENT) - offset))
        for offset in range(0, len(CONTENT), part)
    ]


def expire_all_uploads(server: ServerProcess) -> None:
    """Make every upload an hour older, as the server's store sees it (restarts it)."""
    server.stop()
    with sqlite3.connect(server.data_dir / "files.db") as db:
        db.execute(
            "UPDATE uploads SET created_at = created_at - 3601, expires_at = expires_at - 3601"
        )
    server.restart()


def test_parts_from_offsets_complete_into_the_file(
    server: ServerProcess, remote: HttpFilesRemote, big: Path
) -> None:
    """Windows of the file sent as parts and completed with the md5 give the same bytes."""
    api = api_of(remote)
    upload = api.create_upload("dir/big.bin", "vision", len(CONTENT), mime_type="x/y")
    part_ids = send_parts(api, upload.id, big, 3000)
    done = api.complete_upload(upload.id, part_ids, hashlib.md5(CONTENT).hexdigest())
    assert done.bytes == len(CONTENT) and done.filename == "dir/big.bin"
    out = big.with_name("back")
    with open(out, "wb") as f:
        remote.download(done.id, f, expected_bytes=len(CONTENT))
    assert out.read_bytes() == CONTENT
    assert server.stats()["counts"].get("retrieve", 0) == 0  # the size was given


def test_download_with_a_wrong_expected_size_fails(
    server: ServerProcess, remote: HttpFilesRemote, big: Path
) -> None:
    """download(expected_bytes=) checks the count against the size it was given."""
    file_id = remote.upload(big, "big.bin", "vision").id  # downloadable
    with open(big.with_name("back"), "wb") as f, pytest.raises(PermanentError, match="9999"):
        remote.download(file_id, f, expected_bytes=9999)


def test_wrong_md5_is_a_permanent_error_naming_it(remote: HttpFilesRemote, big: Path) -> None:
    """complete with an md5 the parts do not have is refused with 'md5' in the message."""
    api = api_of(remote)
    upload = api.create_upload("big.bin", "assistants", len(CONTENT), mime_type="x/y")
    part_ids = send_parts(api, upload.id, big, 5000)
    with pytest.raises(PermanentError, match="md5"):
        api.complete_upload(upload.id, part_ids, "0" * 32)


def test_lost_part_answers_are_retried_and_lost_complete_is_ambiguous(
    server: ServerProcess, remote: HttpFilesRemote, big: Path
) -> None:
    """A part whose answer is lost is sent again; complete's lost answer is AmbiguousError."""
    api = api_of(remote)
    upload = api.create_upload("big.bin", "assistants", len(CONTENT), mime_type="x/y")
    server.set_faults({"lost_answer_rate": 0.5, "seed": 3, "routes": ["upload_part"]})
    part_ids = send_parts(api, upload.id, big, 1000)
    assert server.stats()["counts"]["upload_part"] > len(part_ids)  # some were re-sent
    server.set_faults({"lost_answer_rate": 1.0, "routes": ["upload_complete"]})
    with pytest.raises(AmbiguousError):
        api.complete_upload(upload.id, part_ids, hashlib.md5(CONTENT).hexdigest())
    server.set_faults(None)
    assert [f.bytes for f in remote.list_files()] == [len(CONTENT)]  # made once, orphans dropped
    with pytest.raises(AmbiguousError, match="completed"):  # a second complete cannot tell
        api.complete_upload(upload.id, part_ids, None)


def test_expired_and_unknown_uploads_are_gone(
    server: ServerProcess, remote: HttpFilesRemote, big: Path
) -> None:
    """Parts or complete for an expired or unknown upload raise UploadGoneError."""
    api = api_of(remote)
    upload = api.create_upload("big.bin", "assistants", len(CONTENT), mime_type="x/y")
    part = api.add_part(upload.id, big, 0, 100)
    expire_all_uploads(server)
    fresh = HttpFilesRemote(RemoteSettings(base_url=server.base_url, api_key=server.client_key))
    with fresh:
        api = api_of(fresh)
        with pytest.raises(UploadGoneError, match="expired"):
            api.add_part(upload.id, big, 100, 100)
        with pytest.raises(UploadGoneError):
            api.complete_upload(upload.id, [part], None)
        with pytest.raises(UploadGoneError):
            api.add_part("upload_nope", big, 0, 100)
        api.cancel_upload(upload.id)  # nothing to cancel: fine
        api.cancel_upload("upload_nope")


def test_cancel_makes_an_upload_refuse_parts(remote: HttpFilesRemote, big: Path) -> None:
    """A cancelled upload takes no more parts (and cancelling twice is fine)."""
    api = api_of(remote)
    upload = api.create_upload("big.bin", "assistants", len(CONTENT), mime_type="x/y")
    api.cancel_upload(upload.id)
    api.cancel_upload(upload.id)
    with pytest.raises(UploadGoneError, match="cancelled"):
        api.add_part(upload.id, big, 0, 10)


def test_a_file_shorter_than_its_part_is_not_sent(
    server: ServerProcess, remote: HttpFilesRemote, big: Path
) -> None:
    """A part reaching past the end of the file fails before the body ends: no part stored."""
    api = api_of(remote)
    upload = api.create_upload("big.bin", "assistants", 20_000, mime_type="x/y")
    with pytest.raises(RetryableError, match="changed while it was sent"):
        api.add_part(upload.id, big, 5000, 10_000)
    parts = list((server.data_dir / "uploads" / upload.id).iterdir())
    assert parts == []


def test_uploader_over_http_resumes_after_a_failed_part(
    server: ServerProcess, remote: HttpFilesRemote, big: Path, tmp_path: Path
) -> None:
    """MultipartUploader: parts that failed are sent on the next call, the rest are not."""
    job = MultipartJob(
        "big.bin",
        big,
        "big.bin",
        "vision",
        None,
        len(CONTENT),
        hashlib.sha256(CONTENT).hexdigest(),
    )
    with Ledger.open(tmp_path / "state" / "x.db") as ledger:
        up = MultipartUploader(
            remote.uploads_api(), ledger, threshold=1, part_size=1000, max_file_bytes=10**9
        )
        server.set_faults({"error_rate": 1.0, "error_statuses": [400], "routes": ["upload_part"]})
        with pytest.raises(PermanentError):
            up.upload(job)
        (record,) = ledger.multipart_uploads()
        server.set_faults(None)
        server.reset_stats()
        done = up.upload(job)
        counts = server.stats()["counts"]
        assert counts.get("upload_create", 0) == 0 and counts["upload_part"] == 10
        assert done.bytes == len(CONTENT) and ledger.multipart_uploads() == []
        assert record.parts == {}
