"""Large files through the Uploads API: parts sent in parallel, resumable across restarts.

``MultipartUploader`` sends one file start to finish over an ``UploadsApi`` (over HTTP:
``syncd.remote.uploads_http.HttpUploadsApi``). The upload id and every part the server
confirmed are committed to the ledger (``ResumeStore``) as they happen, keyed to the
path and the content (sha256, size) and what is sent (purpose, filename, expiry), so a
restart sends only the missing parts. An upload that expired (an hour after it was
made) or that the server says is gone starts over cleanly; one whose file changed or
vanished is cancelled (``sweep``).

Parts stream from disk (memory does not grow with part or file size), at most
``parallel`` of one file at a time. The md5 that ``complete`` checks is computed in one
streamed pass on a thread beside the part uploads, and kept in the ledger so a resume
does not compute it again.

The File appears only at ``complete``, so the caller's upload intent (see
``syncd.sync.engine``) covers it exactly as it covers ``POST /files``.
"""

from __future__ import annotations

import hashlib
import mimetypes
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import structlog

from syncd.api import MAX_PART_BYTES, UPLOAD_LIFETIME_SECONDS, UPLOADS_API_PURPOSES, RemoteFile
from syncd.errors import FatalError, PermanentError, RemoteError, RetryableError, UploadGoneError
from syncd.remote.protocol import SupportsUploadsApi, UploadsApi
from syncd.state.ledger import LedgerRow, MultipartRecord
from syncd.sync.steps import StepHook, no_step

EXPIRY_MARGIN_SECONDS = 300.0  # an upload with less left is not resumed but made anew
DEFAULT_PARALLEL_PARTS = 4
FRESH_STARTS = 2  # new uploads made within one call when the server loses them
MD5_CHUNK = 1024 * 1024

log = structlog.get_logger(__name__)


def mime_type_for(filename: str) -> str:
    """The ``mime_type`` announced for ``filename`` (JSON Lines as in the API's example)."""
    if filename.endswith(".jsonl"):
        return "text/jsonl"
    return mimetypes.guess_type(filename, strict=False)[0] or "application/octet-stream"


# -- one file, start to finish ---------------------------------------------------------


class ResumeStore(Protocol):
    """Where uploads in progress are remembered (``syncd.ledger.Ledger``)."""

    def multipart_uploads(self, path: str | None = None) -> list[MultipartRecord]: ...

    def begin_multipart(self, record: MultipartRecord) -> None: ...

    def record_part(self, upload_id: str, index: int, part_id: str, size: int) -> None: ...

    def set_multipart_md5(self, upload_id: str, md5: str) -> None: ...

    def drop_multipart(self, upload_id: str) -> None: ...


@dataclass(frozen=True)
class MultipartJob:
    """One content of one file to send: ``path`` is the ledger's key, ``full`` the file."""

    path: str
    full: Path
    filename: str
    purpose: str
    expires_after: int | None
    size: int
    sha256: str

    def matches(self, record: MultipartRecord) -> bool:
        """Whether ``record`` is an upload of exactly this, so its parts can be reused."""
        return (
            record.path == self.path
            and record.sha256 == self.sha256
            and record.size == self.size
            and record.purpose == self.purpose
            and record.filename == self.filename
            and record.expires_after == self.expires_after
            and 0 < record.part_size <= MAX_PART_BYTES
        )


def part_layout(size: int, part_size: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of each part of a ``size``-byte file, in order."""
    return [(offset, min(part_size, size - offset)) for offset in range(0, size, part_size)]


def file_md5(path: Path, size: int, stop: threading.Event | None = None) -> str:
    """The md5 (hex) of the first ``size`` bytes of ``path``, read in 1 MiB chunks.

    Raises ``RetryableError`` if the file is shorter, ``InterruptedError`` if ``stop``
    is set meanwhile.
    """
    digest = hashlib.md5(usedforsecurity=False)
    left = size
    with open(path, "rb") as file:
        while left > 0:
            if stop is not None and stop.is_set():
                raise InterruptedError("md5 no longer needed")
            chunk = file.read(min(MD5_CHUNK, left))
            if not chunk:
                raise RetryableError(f"{path.name}: the file shrank while its md5 was computed")
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


class MultipartUploader:
    """Sends files through the Uploads API, resuming what the ledger remembers.

    ``threshold``: files of at least this many bytes go this way (and any file above
    ``max_file_bytes``, which ``POST /files`` would refuse), if their purpose is one the
    Uploads API accepts. ``part_size`` (at most 64 MiB) applies to new uploads; a resumed
    one keeps its own. ``parallel`` parts of one file are in flight at once.
    """

    def __init__(
        self,
        api: UploadsApi,
        store: ResumeStore,
        *,
        threshold: int,
        part_size: int,
        max_file_bytes: int,
        parallel: int = DEFAULT_PARALLEL_PARTS,
        clock: Callable[[], float] = time.time,
        step: StepHook = no_step,
    ) -> None:
        if not 0 < part_size <= MAX_PART_BYTES:
            raise ValueError(f"part_size must be 1..{MAX_PART_BYTES}")
        self.api = api
        self.store = store
        self.threshold = threshold
        self.part_size = part_size
        self.max_file_bytes = max_file_bytes
        self.parallel = max(1, parallel)
        self.clock = clock
        self.step = step

    def wanted(self, size: int, purpose: str) -> bool:
        """Whether a file of ``size`` bytes with ``purpose`` goes through the Uploads API."""
        return purpose in UPLOADS_API_PURPOSES and (
            size >= self.threshold or size > self.max_file_bytes
        )

    def upload(self, job: MultipartJob) -> RemoteFile:
        """Send ``job`` (resuming a remembered upload of it) and return the new File.

        Raises like ``FilesRemote.upload``: ``AmbiguousError`` when ``complete``'s answer
        was lost (the upload stays remembered: a retry after reconciling completes it
        again), ``RetryableError`` when the file changed while it was sent or the server
        kept losing the upload, ``OSError`` when the file cannot be read.
        """
        record = self._resumable(job)
        fresh_starts = 0
        while True:
            if record is None:
                record = self._start(job)
                fresh_starts += 1
            try:
                return self._finish(job, record)
            except UploadGoneError as exc:
                self.store.drop_multipart(record.upload_id)
                log.info("upload_gone", path=job.path, upload_id=record.upload_id, error=str(exc))
                if fresh_starts >= FRESH_STARTS:
                    raise RetryableError(
                        f"{job.path}: the server dropped the upload {fresh_starts} times "
                        f"({exc.message}); will try again"
                    ) from exc
                record = None

    def sweep(
        self,
        folder: Path,
        row_of: Callable[[str], LedgerRow | None],
        *,
        follow_links: bool = False,
    ) -> int:
        """Forget remembered uploads that can no longer be resumed, cancelling those the
        server still holds: expired ones, those whose file is gone or has another size,
        and those whose path is mirrored already (this content, or a newer one that
        was sent another way). Returns how many were dropped."""
        dropped = 0
        for record in self.store.multipart_uploads():
            reason = self._stale_reason(record, folder, row_of(record.path), follow_links)
            if reason is not None:
                self._abandon(record, reason)
                dropped += 1
        return dropped

    # -- steps ---------------------------------------------------------------------------

    def _resumable(self, job: MultipartJob) -> MultipartRecord | None:
        """The newest remembered upload of exactly ``job`` with time left to finish it;
        the path's other uploads are abandoned (cancelled if still pending)."""
        keep = None
        now = self.clock()
        for record in reversed(self.store.multipart_uploads(job.path)):
            if not job.matches(record):
                self._abandon(record, "the file or what is sent changed")
            elif now >= record.expires_at - EXPIRY_MARGIN_SECONDS:
                self._abandon(record, "expired or about to")
            elif keep is not None:
                self._abandon(record, "a newer upload of the same content exists")
            else:
                keep = record
        if keep is not None:
            log.info(
                "upload_resumed",
                path=job.path,
                upload_id=keep.upload_id,
                parts_done=len(keep.parts),
            )
        return keep

    def _start(self, job: MultipartJob) -> MultipartRecord:
        upload = self.api.create_upload(
            job.filename,
            job.purpose,
            job.size,
            mime_type=mime_type_for(job.filename),
            expires_after_seconds=job.expires_after,
        )
        now = self.clock()
        record = MultipartRecord(
            upload_id=upload.id,
            path=job.path,
            sha256=job.sha256,
            size=job.size,
            purpose=job.purpose,
            filename=job.filename,
            expires_after=job.expires_after,
            part_size=self.part_size,
            created_at=now,
            expires_at=float(min(upload.expires_at, now + UPLOAD_LIFETIME_SECONDS)),
        )
        self.store.begin_multipart(record)
        log.info("upload_created", path=job.path, upload_id=upload.id, bytes=job.size)
        self.step("multipart.created", job.path)
        return record

    def _finish(self, job: MultipartJob, record: MultipartRecord) -> RemoteFile:
        layout = part_layout(job.size, record.part_size)
        done = {
            index: part_id
            for index, (part_id, size) in record.parts.items()
            if index < len(layout) and size == layout[index][1]
        }
        missing = [index for index in range(len(layout)) if index not in done]
        stop = threading.Event()
        with ThreadPoolExecutor(self.parallel + 1, thread_name_prefix="syncd-part") as pool:
            md5_future = None if record.md5 else pool.submit(file_md5, job.full, job.size, stop)
            try:
                done.update(self._send_parts(pool, job, record, layout, missing, stop))
            except BaseException:
                stop.set()
                raise
            md5 = record.md5 or cast(Future[str], md5_future).result()
        if record.md5 is None:
            self.store.set_multipart_md5(record.upload_id, md5)
        part_ids = [done[index] for index in range(len(layout))]
        try:
            remote = self.api.complete_upload(record.upload_id, part_ids, md5)
        except UploadGoneError:
            raise
        except PermanentError as exc:
            if "md5" not in exc.message:
                raise
            # The parts do not add up to this content (it changed while they were sent):
            # start over next time rather than completing something else.
            self._abandon(record, "the parts do not match the file's md5")
            raise RetryableError(
                f"{job.path}: the parts sent do not match the file ({exc.message}); starting over"
            ) from exc
        self.store.drop_multipart(record.upload_id)
        log.info(
            "upload_completed",
            path=job.path,
            upload_id=record.upload_id,
            file_id=remote.id,
            parts=len(part_ids),
            parts_sent=len(missing),
        )
        return remote

    def _send_parts(
        self,
        pool: ThreadPoolExecutor,
        job: MultipartJob,
        record: MultipartRecord,
        layout: list[tuple[int, int]],
        missing: list[int],
        stop: threading.Event,
    ) -> dict[int, str]:
        """Send the missing parts, at most ``parallel`` at a time; the first error stops
        the others from starting and is raised once the ones in flight have ended."""
        slots = threading.BoundedSemaphore(self.parallel)
        sent: dict[int, str] = {}
        # Each part's request starts once the one before it is on its way (or over): the
        # server sees the parts in order, and one that keeps them in place in a single
        # file (``syncd serve``) needs no copy. Waited for before taking a slot, so a
        # part never holds one while the part it waits for needs it.
        on_way = {index: threading.Event() for index in missing}
        previous = dict(zip(missing[1:], missing, strict=False))

        def send(index: int) -> None:
            before = previous.get(index)
            if before is not None:
                on_way[before].wait()
            with slots:
                if stop.is_set():
                    on_way[index].set()
                    return
                offset, length = layout[index]
                try:
                    part_id = self.api.add_part(
                        record.upload_id, job.full, offset, length, on_way[index].set
                    )
                except BaseException:
                    stop.set()  # before the slot is free: no queued part starts after this
                    raise
                finally:
                    on_way[index].set()
                self.store.record_part(record.upload_id, index, part_id, length)
                sent[index] = part_id
                self.step("multipart.part_sent", job.path)

        futures = [pool.submit(send, index) for index in missing]
        wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.done() and f.exception() is not None for f in futures):
            stop.set()
            wait(futures)
            errors = [e for f in futures if (e := f.exception()) is not None]
            # The most telling error wins: a refused key, then a lost upload.
            errors.sort(
                key=lambda e: (not isinstance(e, FatalError), not isinstance(e, UploadGoneError))
            )
            raise errors[0]
        return sent

    def _stale_reason(
        self,
        record: MultipartRecord,
        folder: Path,
        row: LedgerRow | None,
        follow_links: bool,
    ) -> str | None:
        if self.clock() >= record.expires_at:
            return "expired"
        if row is not None and row.file_id is not None and row.sha256 is not None:
            if row.sha256 == record.sha256:
                return "this content is mirrored already"
            if row.error_kind is None and row.failed_sha256 != record.sha256:
                return "a newer content is mirrored"
        full = folder / record.path
        try:
            st = full.stat() if follow_links else full.lstat()
        except OSError:
            return "the file is gone"
        if st.st_size != record.size:
            return "the file changed"
        return None

    def _abandon(self, record: MultipartRecord, reason: str) -> None:
        """Cancel the upload on the server (unless it expired) and forget it."""
        if self.clock() < record.expires_at:
            try:
                self.api.cancel_upload(record.upload_id)
            except FatalError:
                raise
            except RemoteError as exc:  # it expires on its own within the hour
                log.warning("cancel_failed", upload_id=record.upload_id, error=str(exc))
        self.store.drop_multipart(record.upload_id)
        log.info("upload_abandoned", path=record.path, upload_id=record.upload_id, reason=reason)


def multipart_uploader(
    remote: object,
    store: ResumeStore,
    *,
    threshold: int,
    part_size: int,
    max_file_bytes: int,
    clock: Callable[[], float] = time.time,
    step: StepHook = no_step,
) -> MultipartUploader | None:
    """A ``MultipartUploader`` for ``remote``, or None if it has no Uploads API."""
    if not isinstance(remote, SupportsUploadsApi):
        return None
    return MultipartUploader(
        remote.uploads_api(),
        store,
        threshold=threshold,
        part_size=part_size,
        max_file_bytes=max_file_bytes,
        clock=clock,
        step=step,
    )
