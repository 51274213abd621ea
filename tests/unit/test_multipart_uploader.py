"""The Uploads API path without HTTP: part layout, what is resumed, what starts over,
what is cancelled, and the ledger table that remembers it (an in-memory UploadsApi)."""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.api import RemoteFile, RemoteUpload
from syncd.errors import AmbiguousError, PermanentError, RetryableError, UploadGoneError
from syncd.local.fingerprint import Fingerprint
from syncd.state.ledger import Ledger, MultipartRecord
from syncd.sync.multipart import (
    EXPIRY_MARGIN_SECONDS,
    MultipartJob,
    MultipartUploader,
    file_md5,
    mime_type_for,
    part_layout,
)

T0 = 1_700_000_000.0
CONTENT = bytes(range(256)) * 40  # 10,240 bytes


class MemoryUploads:
    """The four Uploads API calls in memory, with switches to make them fail."""

    def __init__(self) -> None:
        self.uploads: dict[str, dict[str, bytes]] = {}
        self.status: dict[str, str] = {}
        self.calls: list[str] = []
        self.fail_part_after: int | None = None  # parts accepted before the next fails
        self.gone: set[str] = set()  # uploads the "server" no longer has pending
        self.complete_error: Exception | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def create_upload(
        self,
        filename: str,
        purpose: str,
        size: int,
        *,
        mime_type: str,
        expires_after_seconds: int | None = None,
    ) -> RemoteUpload:
        upload_id = f"upload_{next(self._ids)}"
        self.calls.append(f"create {filename} {mime_type}")
        self.uploads[upload_id] = {}
        self.status[upload_id] = "pending"
        return RemoteUpload(upload_id, int(T0) + 3600)

    def add_part(
        self,
        upload_id: str,
        path: Path,
        offset: int,
        length: int,
        on_sending: Callable[[], None] | None = None,
    ) -> str:
        with self._lock:
            self.calls.append(f"part {offset}")
        if on_sending is not None:  # as the HTTP API does once the headers are sent
            on_sending()
        with self._lock:
            if upload_id in self.gone:
                raise UploadGoneError(f"upload {upload_id} expired", status=400)
            if self.fail_part_after is not None:
                if self.fail_part_after == 0:
                    raise RetryableError("connection reset")
                self.fail_part_after -= 1
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(length)
            part_id = f"part_{next(self._ids)}"
            self.uploads[upload_id][part_id] = data
            return part_id

    def complete_upload(self, upload_id: str, part_ids: list[str], md5: str | None) -> RemoteFile:
        self.calls.append(f"complete {upload_id}")
        if self.complete_error is not None:
            raise self.complete_error
        if upload_id in self.gone:
            raise UploadGoneError(f"upload {upload_id} expired", status=400)
        whole = b"".join(self.uploads[upload_id][p] for p in part_ids)
        if md5 != hashlib.md5(whole).hexdigest():
            raise PermanentError("The md5 of the assembled file is wrong.", status=400)
        self.status[upload_id] = "completed"
        return RemoteFile(f"file-{upload_id}", "big.bin", len(whole), int(T0), "assistants")

    def cancel_upload(self, upload_id: str) -> None:
        self.calls.append(f"cancel {upload_id}")
        self.status[upload_id] = "cancelled"

    def count(self, prefix: str) -> int:
        return sum(1 for c in self.calls if c.startswith(prefix))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.open(tmp_path / "state" / "x.db")
    yield led
    led.close()


@pytest.fixture
def big(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "big.bin").write_bytes(CONTENT)
    return folder / "big.bin"


def job_for(path: Path, content: bytes = CONTENT, **changes: object) -> MultipartJob:
    values: dict[str, object] = {
        "path": "big.bin",
        "full": path,
        "filename": "big.bin",
        "purpose": "assistants",
        "expires_after": None,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    values.update(changes)
    return MultipartJob(**values)  # type: ignore[arg-type]


def uploader(api: MemoryUploads, ledger: Ledger, now: float = T0) -> MultipartUploader:
    return MultipartUploader(
        api,
        ledger,
        threshold=1000,
        part_size=1024,
        max_file_bytes=512_000_000,
        parallel=3,
        clock=lambda: now,
    )


def test_part_layout_covers_the_file_in_order() -> None:
    """Parts are part_size long, the last one shorter, and add up to the size."""
    assert part_layout(10, 4) == [(0, 4), (4, 4), (8, 2)]
    assert part_layout(8, 4) == [(0, 4), (4, 4)]
    assert part_layout(3, 64) == [(0, 3)]


def test_mime_type_for_names() -> None:
    """JSON Lines are announced as text/jsonl, unknown names as octet-stream."""
    assert mime_type_for("a/train.jsonl") == "text/jsonl"
    assert mime_type_for("notes.txt") == "text/plain"
    assert mime_type_for("blob.weird-ext") == "application/octet-stream"


def test_parts_start_in_file_order_though_sent_in_parallel(ledger: Ledger, big: Path) -> None:
    """Each part starts once the one before it is on its way: a server sees the parts in
    the file's order (``syncd serve`` then keeps them in place, without a copy)."""
    api = MemoryUploads()
    uploader(api, ledger).upload(job_for(big))
    offsets = [int(c.split()[1]) for c in api.calls if c.startswith("part")]
    assert len(offsets) > 3 and offsets == sorted(offsets)


def test_md5_is_of_the_announced_size(tmp_path: Path) -> None:
    """file_md5 hashes exactly size bytes and fails if the file is shorter."""
    path = tmp_path / "f"
    path.write_bytes(b"abcdef")
    assert file_md5(path, 3) == hashlib.md5(b"abc").hexdigest()
    with pytest.raises(RetryableError, match="shrank"):
        file_md5(path, 7)


def test_which_files_go_through_the_uploads_api(ledger: Ledger) -> None:
    """From the threshold on, or above the POST /files limit, and only for its purposes."""
    up = MultipartUploader(
        MemoryUploads(), ledger, threshold=100, part_size=10, max_file_bytes=1000
    )
    assert up.wanted(100, "assistants") and up.wanted(100, "fine-tune")
    assert not up.wanted(99, "vision")
    assert not up.wanted(5000, "user_data") and not up.wanted(5000, "evals")
    late = MultipartUploader(
        MemoryUploads(), ledger, threshold=10**9, part_size=10, max_file_bytes=1000
    )
    assert late.wanted(1001, "batch") and not late.wanted(1000, "batch")


def test_whole_upload_sends_every_part_and_forgets_it(ledger: Ledger, big: Path) -> None:
    """A fresh upload sends all parts, completes with the right md5 and leaves no record."""
    api = MemoryUploads()
    remote = uploader(api, ledger).upload(job_for(big))
    assert remote.bytes == len(CONTENT)
    assert api.count("create") == 1 and api.count("part") == 10 and api.count("complete") == 1
    assert "create big.bin application/octet-stream" in api.calls
    assert ledger.multipart_uploads() == []


def test_resume_sends_only_the_missing_parts(ledger: Ledger, big: Path) -> None:
    """After a failure mid-way, the next call reuses the upload and its recorded parts."""
    api = MemoryUploads()
    api.fail_part_after = 4
    with pytest.raises(RetryableError, match="reset"):
        uploader(api, ledger).upload(job_for(big))
    (record,) = ledger.multipart_uploads("big.bin")
    assert len(record.parts) >= 4 and record.md5 is None
    already = len(record.parts)
    api.fail_part_after = None
    api.calls.clear()
    uploader(api, ledger).upload(job_for(big))
    assert api.count("create") == 0 and api.count("part") == 10 - already
    assert api.count("complete") == 1 and ledger.multipart_uploads() == []


def test_an_upload_the_server_lost_starts_over_once(ledger: Ledger, big: Path) -> None:
    """UploadGoneError on a resumed upload: forget it, make a new one, send everything."""
    api = MemoryUploads()
    api.fail_part_after = 2
    with pytest.raises(RetryableError):
        uploader(api, ledger).upload(job_for(big))
    (old,) = ledger.multipart_uploads()
    api.gone.add(old.upload_id)
    api.fail_part_after = None
    api.calls.clear()
    remote = uploader(api, ledger).upload(job_for(big))
    assert remote.id != f"file-{old.upload_id}"
    assert api.count("create") == 1 and api.count("complete") == 1
    assert ledger.multipart_uploads() == []


def test_an_upload_lost_again_and_again_is_a_retryable_error(ledger: Ledger, big: Path) -> None:
    """A server that drops every upload does not make syncd loop: it fails, retryably."""

    class Forgetful(MemoryUploads):
        def add_part(
            self,
            upload_id: str,
            path: Path,
            offset: int,
            length: int,
            on_sending: Callable[[], None] | None = None,
        ) -> str:
            raise UploadGoneError("no such upload", status=404)

    api = Forgetful()
    with pytest.raises(RetryableError, match="dropped the upload 2 times"):
        uploader(api, ledger).upload(job_for(big))
    assert api.count("create") == 2 and ledger.multipart_uploads() == []


def test_an_expired_record_is_not_resumed(ledger: Ledger, big: Path) -> None:
    """An upload within the expiry margin is forgotten (not cancelled when already past)."""
    api = MemoryUploads()
    api.fail_part_after = 1
    with pytest.raises(RetryableError):
        uploader(api, ledger).upload(job_for(big))
    (old,) = ledger.multipart_uploads()
    api.fail_part_after = None
    api.calls.clear()
    later = old.expires_at - EXPIRY_MARGIN_SECONDS + 1
    uploader(api, ledger, now=later).upload(job_for(big))
    assert f"cancel {old.upload_id}" in api.calls  # still pending there: cancelled
    assert api.count("create") == 1 and api.count("part") == 10
    api.fail_part_after = 1
    with pytest.raises(RetryableError):
        uploader(api, ledger).upload(job_for(big))
    (gone,) = ledger.multipart_uploads()
    api.fail_part_after = None
    api.calls.clear()
    uploader(api, ledger, now=gone.expires_at + 1).upload(job_for(big))
    assert not any(c.startswith("cancel") for c in api.calls)  # past its hour: nothing to cancel


def test_changed_content_cancels_the_old_upload(ledger: Ledger, big: Path) -> None:
    """A remembered upload of other content (or another purpose) is cancelled, not reused."""
    api = MemoryUploads()
    api.fail_part_after = 3
    with pytest.raises(RetryableError):
        uploader(api, ledger).upload(job_for(big))
    (old,) = ledger.multipart_uploads()
    new_content = CONTENT[::-1]
    big.write_bytes(new_content)
    api.fail_part_after = None
    api.calls.clear()
    uploader(api, ledger).upload(job_for(big, new_content))
    assert api.calls[0] == f"cancel {old.upload_id}"
    assert api.count("part") == 10 and ledger.multipart_uploads() == []


def test_lost_complete_answer_keeps_the_upload(ledger: Ledger, big: Path) -> None:
    """AmbiguousError from complete is raised as is and the upload stays remembered."""
    api = MemoryUploads()
    api.complete_error = AmbiguousError("no answer", status=502)
    with pytest.raises(AmbiguousError):
        uploader(api, ledger).upload(job_for(big))
    (record,) = ledger.multipart_uploads()
    assert len(record.parts) == 10 and record.md5 == hashlib.md5(CONTENT).hexdigest()
    api.complete_error = None
    api.calls.clear()
    uploader(api, ledger).upload(job_for(big))
    assert api.calls == [f"complete {record.upload_id}"]  # md5 and parts reused


def test_md5_mismatch_starts_over_next_time(ledger: Ledger, big: Path) -> None:
    """Parts that do not add up to the file: the upload is abandoned, the error retryable."""
    api = MemoryUploads()
    api.fail_part_after = 3
    with pytest.raises(RetryableError):
        uploader(api, ledger).upload(job_for(big))
    (record,) = ledger.multipart_uploads()
    _index, (part_id, _size) = next(iter(record.parts.items()))
    api.uploads[record.upload_id][part_id] = b"x" * 1024  # a corrupted part
    api.fail_part_after = None
    with pytest.raises(RetryableError, match="do not match"):
        uploader(api, ledger).upload(job_for(big))
    assert ledger.multipart_uploads() == []
    assert api.status[record.upload_id] == "cancelled"


def _record(ledger: Ledger, path: str, sha: str, size: int, expires_at: float) -> str:
    upload_id = f"upload_{path}"
    ledger.begin_multipart(
        MultipartRecord(upload_id, path, sha, size, "assistants", path, None, 1024, T0, expires_at)
    )
    return upload_id


def test_sweep_keeps_only_resumable_uploads(ledger: Ledger, tmp_path: Path) -> None:
    """Gone, resized, expired and already-mirrored uploads are dropped; the others stay."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("same", "resized", "expired", "mirrored", "newer", "failed"):
        (folder / name).write_bytes(b"12345")
    sha = hashlib.sha256(b"12345").hexdigest()
    keep = _record(ledger, "same", sha, 5, T0 + 3600)
    _record(ledger, "deleted", sha, 5, T0 + 3600)
    _record(ledger, "resized", sha, 6, T0 + 3600)
    _record(ledger, "expired", sha, 5, T0 - 1)
    _record(ledger, "mirrored", sha, 5, T0 + 3600)
    _record(ledger, "newer", sha, 5, T0 + 3600)
    failed = _record(ledger, "failed", sha, 5, T0 + 3600)
    remote = RemoteFile("file-1", "x", 5, int(T0), "assistants")
    for path, content_sha in (("mirrored", sha), ("newer", "bb" * 32), ("failed", "bb" * 32)):
        intent = ledger.begin_upload(
            path,
            Fingerprint(5, 1, 1, content_sha),
            filename=path,
            purpose="assistants",
            expires_after=None,
            replaces=None,
            now=T0,
        )
        ledger.complete_upload(intent, remote, stale=False, now=T0)
    ledger.record_failure("failed", Fingerprint(5, 2, 2, sha), "boom", permanent=False, now=T0)
    api = MemoryUploads()
    dropped = uploader(api, ledger).sweep(folder, ledger.row)
    assert dropped == 5
    assert {r.upload_id for r in ledger.multipart_uploads()} == {keep, failed}
    assert "cancel upload_expired" not in api.calls and api.count("cancel") == 4


def test_records_survive_reopening_the_ledger(tmp_path: Path) -> None:
    """Uploads and parts are on disk: a new process sees the same record."""
    path = tmp_path / "s" / "x.db"
    with Ledger.open(path) as first:
        _record(first, "a", "aa" * 32, 3000, T0 + 3600)
        first.record_part("upload_a", 2, "part_z", 952)
        first.record_part("upload_a", 0, "part_x", 1024)
        first.set_multipart_md5("upload_a", "m5")
    with Ledger.open(path) as again:
        (record,) = again.multipart_uploads("a")
        assert record.parts == {0: ("part_x", 1024), 2: ("part_z", 952)}
        assert record.md5 == "m5" and record.expires_at == T0 + 3600
        again.drop_multipart("upload_a")
        assert again.multipart_uploads() == []
