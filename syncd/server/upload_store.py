"""Uploads API state on disk: uploads and their parts, beside the files of ``FileStore``.

Rows live in the store's ``files.db`` (tables ``uploads`` and ``upload_parts``, same lock,
same transactions); part contents in ``uploads/<upload-id>/<part-id>``. A part is
received into ``tmp/``, fsynced and renamed into place before its row is committed, so
a listed part is always whole. ``complete`` assembles the parts, in the order given,
into a new temp file and hands it to ``FileStore.commit``; the parts are then removed.

States: ``pending`` -> ``completed`` | ``cancelled`` | ``expired`` (an hour after
creation; computed when read, the parts purged lazily). While one request assembles an
upload it is ``completing``, so a second ``complete`` cannot run at the same time.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncd.api import UPLOAD_LIFETIME_SECONDS
from syncd.server import clock
from syncd.server.store import DIR_MODE, FileStore, IncomingBlob, make_private_dir, new_id

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
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS upload_parts_by_upload ON upload_parts (upload_id);
"""
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

    def to_json(self) -> dict[str, Any]:
        """The ``UploadPart`` object."""
        return {
            "id": self.id,
            "object": "upload.part",
            "created_at": self.created_at,
            "upload_id": self.upload_id,
        }


class UploadStore:
    """Uploads and parts in ``files.db`` and ``uploads/``; every method may block on disk."""

    def __init__(self, files: FileStore) -> None:
        self.files = files
        self.root = files.root / "uploads"
        make_private_dir(self.root)
        self.root.chmod(DIR_MODE)
        files.ensure_schema(_SCHEMA)
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
                if part.name not in known:
                    with contextlib.suppress(OSError):
                        part.unlink()

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
        return record

    def get(self, upload_id: str) -> UploadRecord | None:
        rows = self.files.query(
            f"SELECT {_COLUMNS} FROM uploads WHERE id = ?",  # noqa: S608
            (upload_id,),
        )
        return UploadRecord(*rows[0]) if rows else None

    def parts(self, upload_id: str) -> dict[str, PartRecord]:
        rows = self.files.query(
            "SELECT id, upload_id, bytes, created_at FROM upload_parts WHERE upload_id = ?",
            (upload_id,),
        )
        return {row[0]: PartRecord(*row) for row in rows}

    def part_path(self, part: PartRecord) -> Path:
        return self.root / part.upload_id / part.id

    def add_part(self, upload_id: str, incoming: IncomingBlob) -> PartRecord | None:
        """Land a received part; None (and the part dropped) if the upload is not pending."""
        incoming.finish()
        part = PartRecord(new_id("part_"), upload_id, incoming.size, int(clock.now()))
        target = self.part_path(part)
        try:
            incoming.move_to(target)
        except FileNotFoundError:  # the upload's folder went: it was finished meanwhile
            incoming.discard()
            return None
        with self.files.transaction() as db:
            row = db.execute(
                "SELECT status, expires_at FROM uploads WHERE id = ?", (upload_id,)
            ).fetchone()
            if row is not None and row[0] == "pending" and row[1] > clock.now():
                db.execute(
                    "INSERT INTO upload_parts (id, upload_id, bytes, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (part.id, part.upload_id, part.bytes, part.created_at),
                )
                return part
        try:
            with self.files.transaction() as db:
                row = db.execute(
                    "SELECT status, expires_at FROM uploads WHERE id = ?", (upload_id,)
                ).fetchone()
                if row is not None and row[0] == "pending" and row[1] > clock.now():
                    db.execute(
                        "INSERT INTO upload_parts (id, upload_id, bytes, created_at)"
                        " VALUES (?, ?, ?, ?)",
                        (part.id, part.upload_id, part.bytes, part.created_at),
                    )
                    return part
        except BaseException:  # e.g. the database's disk is full: no part file without a row
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            raise
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        return None

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
