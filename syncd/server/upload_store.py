"""Uploads API state on disk: uploads and their parts, beside the files of ``FileStore``.

Rows live in the store's ``files.db`` (tables ``uploads`` and ``upload_parts``, same lock,
same transactions); part contents in ``uploads/<upload-id>/data``. Each part request is
given a slot when it arrives (the next one of its upload; slot ``n`` starts at byte
``n * MAX_PART_BYTES``, so a part, at most that long, never overlaps the next) and is
written straight there, then fsynced before its row is committed, so a listed part is
always whole. Parts sent in order, each but the last a full 64 MiB (the SDK's and
syncd's part size), leave ``data`` laid out as the whole file: ``complete`` then hands it
to ``FileStore.commit`` as a hard link, without a second copy. Any other layout (parts
listed out of order, shorter parts, parts left out) is copied in the given order into a
new temp file, in the kernel. Stores of older versions keep a part per file,
``uploads/<upload-id>/<part-id>`` (rows without a slot); those are copied the same way.

States: ``pending`` -> ``completed`` | ``cancelled`` | ``expired`` (an hour after
creation; computed when read, the parts purged lazily). While one request assembles an
upload it is ``completing``, so a second ``complete`` cannot run at the same time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd.api import MAX_PART_BYTES, UPLOAD_LIFETIME_SECONDS
from syncd.server import clock
from syncd.server.store import (
    DIR_MODE,
    FILE_MODE,
    FileStore,
    IncomingBlob,
    make_private_dir,
    new_id,
)
from syncd.server.validation import READ_CHUNK

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id            TEXT PRIMARY KEY,
    filename      TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    bytes         INTEGER NOT NULL,
    mime_type     TEXT NOT NULL,
    expires_after INTEGER,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    status        TEXT NOT NULL,
    file_id       TEXT
);
CREATE TABLE IF NOT EXISTS upload_parts (
    id         TEXT PRIMARY KEY,
    upload_id  TEXT NOT NULL REFERENCES uploads (id),
    bytes      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    slot       INTEGER
);
CREATE INDEX IF NOT EXISTS upload_parts_by_upload ON upload_parts (upload_id);
"""
DATA_NAME = "data"  # in a pending upload's folder: every part at its slot's offset
_PART_COLUMNS = "id, upload_id, bytes, created_at, slot"
_COLUMNS = (
    "id, filename, purpose, bytes, mime_type, expires_after, created_at, expires_at, status,"
    " file_id"
)


@dataclass(frozen=True)
class UploadRecord:
    id: str
    filename: str
    purpose: str
    bytes: int
    mime_type: str
    expires_after: int | None
    created_at: int
    expires_at: int
    status: str
    file_id: str | None

    def current_status(self, now: float | None = None) -> str:
        """``expired`` once a pending upload is past its hour, else the stored status."""
        now = clock.now() if now is None else now
        if self.status in ("pending", "completing") and now >= self.expires_at:
            return "expired"
        return "pending" if self.status == "completing" else self.status

    def to_json(self, file: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``Upload`` object (``file`` is the created File once completed)."""
        return {
            "id": self.id,
            "object": "upload",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": self.current_status(),
            "expires_at": self.expires_at,
            "file": file,
        }


@dataclass(frozen=True)
class PartRecord:
    id: str
    upload_id: str
    bytes: int
    created_at: int
    slot: int | None = None  # None: a part of an older store, in a file of its own

    def to_json(self) -> dict[str, Any]:
        """The ``UploadPart`` object."""
        return {
            "id": self.id,
            "object": "upload.part",
            "created_at": self.created_at,
            "upload_id": self.upload_id,
        }


@dataclass
class _RunningMd5:
    """The md5 of an upload's slots ``0 .. next_slot - 1``, hashed as they land."""

    digest: Any = field(default_factory=lambda: hashlib.md5(usedforsecurity=False))
    next_slot: int = 0


class UploadClosedError(Exception):
    """The upload takes no more parts: it is being completed, or it is finished."""


class SlotBlob(IncomingBlob):
    """A part received straight into its slot of the upload's ``data`` file.

    Written with ``pwrite`` at ``slot * MAX_PART_BYTES`` (parts of one upload arrive in
    parallel, each through its own descriptor); ``finish`` fsyncs. ``land`` marks it
    listed (its row is committed); ``discard`` of one that did not land tells the store,
    which trims what it wrote. Never moved: ``move_to`` is not for it.
    """

    def __init__(self, path: Path, slot: int, done: Callable[[bool], None]) -> None:
        self.path = path
        self.size = 0
        self.landed = False
        self.slot = slot
        self._file = None
        self._offset = slot * MAX_PART_BYTES
        self._done: Callable[[bool], None] | None = done
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except BaseException:
            self._release(False)
            raise

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self._fd is not None, "write after close"
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, self._offset + self.size)
            self.size += written
            view = view[written:]

    def finish(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def move_to(self, target: Path) -> None:
        raise NotImplementedError("a part in its slot stays in the upload's data file")

    def land(self) -> None:
        """Its row is committed: the bytes belong to the upload now."""
        self.landed = True
        self._release(True)

    def discard(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self._release(self.landed)

    def _release(self, landed: bool) -> None:
        done, self._done = self._done, None
        if done is not None:
            done(landed)


class UploadStore:
    """Uploads and parts in ``files.db`` and ``uploads/``; every method may block on disk."""

    def __init__(self, files: FileStore) -> None:
        self.files = files
        self.root = files.root / "uploads"
        make_private_dir(self.root)
        self.root.chmod(DIR_MODE)
        files.ensure_schema(_SCHEMA)
        columns = {row[1] for row in files.query("PRAGMA table_info(upload_parts)")}
        if "slot" not in columns:  # a store of an older version: a part per file
            with files.transaction() as db:
                db.execute("ALTER TABLE upload_parts ADD COLUMN slot INTEGER")
        # In memory, under _slots_lock: the next slot of each pending upload, how many
        # parts are being written into each upload's data file, and the uploads whose
        # data file is being completed in place (no writer may open it meanwhile).
        self._slots_lock = threading.Lock()
        self._next_slot: dict[str, int] = {}
        self._writers: dict[str, int] = {}
        self._sealed: set[str] = set()
        # The md5 of each upload's parts in slot order, hashed by one thread as the parts
        # land (from the page cache), so complete need not read the file again when the
        # parts are in place; none of it survives a restart (complete then reads).
        self._md5s: dict[str, _RunningMd5] = {}
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="syncd-part-md5")
        self._recover()

    def _recover(self) -> None:
        """Back to a clean state after a crash: unfinished assemblies become pending again,
        part files without a row and the parts of finished uploads go."""
        with self.files.transaction() as db:
            db.execute("UPDATE uploads SET status = 'pending' WHERE status = 'completing'")
        self.purge_finished()
        known = {row[0] for row in self.files.query("SELECT id FROM upload_parts")}
        for upload_dir in self.root.iterdir():
            for part in upload_dir.iterdir() if upload_dir.is_dir() else ():
                if part.name not in known and part.name != DATA_NAME:
                    with contextlib.suppress(OSError):
                        part.unlink()
        rows = self.files.query(
            "SELECT u.id, MAX(p.slot) FROM uploads u LEFT JOIN upload_parts p"
            " ON p.upload_id = u.id WHERE u.status = 'pending' GROUP BY u.id"
        )
        for upload_id, last_slot in rows:
            self._next_slot[upload_id] = 0 if last_slot is None else last_slot + 1
            self._trim(upload_id)  # what a part cut short by the crash wrote

    def purge_finished(self) -> None:
        """Mark pending uploads past their hour expired; delete the parts of every upload
        that is no longer pending (only pending uploads keep a folder)."""
        with self.files.transaction() as db:
            db.execute(
                "UPDATE uploads SET status = 'expired'"
                " WHERE status = 'pending' AND expires_at <= ?",
                (int(clock.now()),),
            )
        folders = [d.name for d in self.root.iterdir() if d.is_dir()]
        if not folders:
            return
        marks = ", ".join("?" * len(folders))
        statuses = dict(
            self.files.query(
                f"SELECT id, status FROM uploads WHERE id IN ({marks})",  # noqa: S608
                tuple(folders),
            )
        )
        for upload_id in folders:
            if statuses.get(upload_id) in ("pending", "completing"):
                continue
            with self._slots_lock:
                self._next_slot.pop(upload_id, None)
                self._md5s.pop(upload_id, None)
            with self.files.transaction() as db:
                db.execute("DELETE FROM upload_parts WHERE upload_id = ?", (upload_id,))
            shutil.rmtree(self.root / upload_id, ignore_errors=True)

    def create(
        self,
        *,
        filename: str,
        purpose: str,
        size: int,
        mime_type: str,
        expires_after: int | None,
    ) -> UploadRecord:
        self.purge_finished()
        now = int(clock.now())
        record = UploadRecord(
            id=new_id("upload_"),
            filename=filename,
            purpose=purpose,
            bytes=size,
            mime_type=mime_type,
            expires_after=expires_after,
            created_at=now,
            expires_at=now + UPLOAD_LIFETIME_SECONDS,
            status="pending",
            file_id=None,
        )
        with self.files.transaction() as db:
            db.execute(
                f"INSERT INTO uploads ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    record.id,
                    record.filename,
                    record.purpose,
                    record.bytes,
                    record.mime_type,
                    record.expires_after,
                    record.created_at,
                    record.expires_at,
                    record.status,
                    record.file_id,
                ),
            )
        # After the row: purge_finished drops unknown folders.
        (self.root / record.id).mkdir(mode=DIR_MODE)
        with self._slots_lock:
            self._next_slot[record.id] = 0
        return record

    def get(self, upload_id: str) -> UploadRecord | None:
        rows = self.files.query(
            f"SELECT {_COLUMNS} FROM uploads WHERE id = ?",  # noqa: S608
            (upload_id,),
        )
        return UploadRecord(*rows[0]) if rows else None

    def parts(self, upload_id: str) -> dict[str, PartRecord]:
        rows = self.files.query(
            f"SELECT {_PART_COLUMNS} FROM upload_parts WHERE upload_id = ?",  # noqa: S608
            (upload_id,),
        )
        return {row[0]: PartRecord(*row) for row in rows}

    def data_path(self, upload_id: str) -> Path:
        return self.root / upload_id / DATA_NAME

    def part_source(self, part: PartRecord) -> tuple[Path, int]:
        """Where a part's bytes are: the file and the offset in it."""
        if part.slot is None:
            return self.root / part.upload_id / part.id, 0
        return self.data_path(part.upload_id), part.slot * MAX_PART_BYTES

    def reserve_slot(self, upload_id: str) -> int | None:
        """The next slot of a pending upload, None if it has none (unknown or finished).
        Memory only, so the event loop can call it as each request arrives: the slots
        follow the order the parts were sent in."""
        with self._slots_lock:
            slot = self._next_slot.get(upload_id)
            if slot is not None:
                self._next_slot[upload_id] = slot + 1
            return slot

    def open_slot(self, upload_id: str, slot: int) -> SlotBlob:
        """A blob writing into ``slot`` of the upload's data file; ``UploadClosedError``
        if the upload is being completed or its folder is gone (it was finished)."""
        with self._slots_lock:
            if upload_id in self._sealed:
                raise UploadClosedError(upload_id)
            self._writers[upload_id] = self._writers.get(upload_id, 0) + 1
        try:
            return SlotBlob(
                self.data_path(upload_id), slot, lambda landed: self._writer_done(upload_id, landed)
            )
        except FileNotFoundError:
            raise UploadClosedError(upload_id) from None

    def _writer_done(self, upload_id: str, landed: bool) -> None:
        with self._slots_lock:
            left = self._writers.get(upload_id, 1) - 1
            if left > 0:
                self._writers[upload_id] = left
                return
            self._writers.pop(upload_id, None)
            if not landed:
                self._trim(upload_id)

    def _trim(self, upload_id: str) -> None:
        """Cut the data file back to the end of its last listed part (removed if none):
        no bytes stay from a part that never landed. Only with no writer at work."""
        rows = self.files.query(
            "SELECT slot, bytes FROM upload_parts WHERE upload_id = ? AND slot IS NOT NULL"
            " ORDER BY slot DESC LIMIT 1",
            (upload_id,),
        )
        path = self.data_path(upload_id)
        with contextlib.suppress(FileNotFoundError):
            if not rows:
                path.unlink()
            elif path.stat().st_size > rows[0][0] * MAX_PART_BYTES + rows[0][1]:
                os.truncate(path, rows[0][0] * MAX_PART_BYTES + rows[0][1])

    def in_place(self, upload_id: str, ordered: list[PartRecord], every_part: bool) -> bool:
        """Whether the data file already holds ``ordered`` as one file (slot ``i`` is the
        ``i``-th part, each but the last a full slot, no other part) and no part is being
        written into it; if so, no part can start until ``release`` (the upload is sealed)."""
        if not every_part or not ordered:
            return False
        for index, part in enumerate(ordered):
            if part.slot != index:
                return False
            if index < len(ordered) - 1 and part.bytes != MAX_PART_BYTES:
                return False
        with self._slots_lock:
            if self._writers.get(upload_id, 0) > 0:
                return False
            self._sealed.add(upload_id)
            return True

    def adopt_data(self, upload_id: str, size: int) -> IncomingBlob:
        """The sealed upload's data file, cut to ``size`` bytes, as a blob for
        ``FileStore.commit`` (a hard link: the parts stay until the upload is finished)."""
        path = self.data_path(upload_id)
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)  # only what a cut-short part left past the last part
            os.fsync(fd)
        finally:
            os.close(fd)
        return self.files.link_incoming(path, size)

    def release(self, upload_id: str) -> None:
        """Parts may be written into the upload's data file again (``in_place`` ended)."""
        with self._slots_lock:
            self._sealed.discard(upload_id)

    def add_part(self, upload_id: str, incoming: SlotBlob) -> PartRecord | None:
        """List a received part; None (and the part dropped) if the upload is not pending."""
        incoming.finish()
        part = PartRecord(
            new_id("part_"), upload_id, incoming.size, int(clock.now()), incoming.slot
        )
        with self.files.transaction() as db:
            row = db.execute(
                "SELECT status, expires_at FROM uploads WHERE id = ?", (upload_id,)
            ).fetchone()
            if row is None or row[0] != "pending" or row[1] <= clock.now():
                return None
            db.execute(
                f"INSERT INTO upload_parts ({_PART_COLUMNS}) VALUES (?, ?, ?, ?, ?)",  # noqa: S608
                (part.id, part.upload_id, part.bytes, part.created_at, part.slot),
            )
        incoming.land()
        self._hasher.submit(self._hash_landed, upload_id)
        return part

    def _hash_landed(self, upload_id: str) -> None:
        """Add the parts that now follow the hashed ones, slot after slot, to the md5."""
        with self._slots_lock:
            if upload_id not in self._next_slot:  # finished meanwhile
                return
            running = self._md5s.setdefault(upload_id, _RunningMd5())
        rows = self.files.query(
            "SELECT slot, bytes FROM upload_parts WHERE upload_id = ? AND slot >= ? ORDER BY slot",
            (upload_id, running.next_slot),
        )
        try:
            with open(self.data_path(upload_id), "rb", buffering=0) as data:
                for slot, size in rows:
                    if slot != running.next_slot:
                        return  # a gap: that part is still on its way (or never lands)
                    data.seek(slot * MAX_PART_BYTES)
                    left = size
                    while left > 0:
                        chunk = data.read(min(READ_CHUNK, left))
                        if not chunk:
                            raise OSError(f"slot {slot} is short")
                        running.digest.update(chunk)
                        left -= len(chunk)
                    running.next_slot += 1
        except OSError:  # the upload was finished meanwhile: complete reads if need be
            with self._slots_lock:
                self._md5s.pop(upload_id, None)

    def md5_in_place(self, upload_id: str, slots: int) -> str | None:
        """The md5 of slots ``0 .. slots - 1`` if they are all hashed already (after the
        hashing of the parts landed so far has ended), else None."""
        self._hasher.submit(lambda: None).result()
        running = self._md5s.get(upload_id)
        if running is None or running.next_slot != slots:
            return None
        return str(running.digest.hexdigest())

    def set_status(self, upload_id: str, new: str, *, old: str, file_id: str | None = None) -> bool:
        """Move an upload from ``old`` to ``new`` status; False if it was not in ``old``."""
        with self.files.transaction() as db:
            cursor = db.execute(
                "UPDATE uploads SET status = ?, file_id = COALESCE(?, file_id)"
                " WHERE id = ? AND status = ?",
                (new, file_id, upload_id, old),
            )
            changed = cursor.rowcount > 0
        if changed and new in ("completed", "cancelled"):
            self.purge_finished()
        return changed
