"""The on-disk store behind `syncd serve`: file contents as blobs, metadata in SQLite.

Layout of the data directory::

    files.db            metadata (one row per file, deleted rows kept as tombstones)
    blobs/<file-id>     the content of each live file
    tmp/                uploads in progress; emptied at start
    uploads/            Uploads API state (see ``syncd.server.uploads``)
    .lock               held (flock) by the one server using this directory

The store is private: directories it creates are 0700 (``blobs/``, ``tmp/`` and
``uploads/`` are made 0700 even in an older store), files 0600 (blobs, parts,
``files.db`` and with it SQLite's ``-wal``/``-shm``), whatever the umask.

Contract:

- A file is visible only after its content is complete on disk: the upload is written
  to ``tmp/``, fsynced, renamed into ``blobs/`` (and the directory fsynced), and only
  then is its row committed. A crash at any point leaves either no file or a whole one;
  leftovers (temp files, blobs without a row) are removed at the next start.
- Every method is safe to call from many threads at once (one connection, one lock;
  each statement is short). Methods block on disk: call them from a worker thread.
- Listing order is ``created_at`` then insertion sequence, so paging with ``after`` is
  stable even when many files share a second. Deleted and expired files keep their
  row (a tombstone) so that a cursor pointing at them still finds its place.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import string
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from syncd.errors import LockHeldError, StoreLockedError
from syncd.group_commit import GroupCommit
from syncd.server import clock
from syncd.state.lock import FileLock

_ALPHABET = string.ascii_letters + string.digits
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    filename   TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    deleted_at INTEGER
);
CREATE INDEX IF NOT EXISTS files_order ON files (created_at, seq);
CREATE INDEX IF NOT EXISTS files_expiry ON files (expires_at) WHERE expires_at IS NOT NULL;
"""
TOMBSTONE_KEEP_SECONDS = 7 * 86400
DIR_MODE = 0o700
FILE_MODE = 0o600


def new_id(prefix: str) -> str:
    """An id like the real API's: a prefix and 24 random letters and digits."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(24))


@dataclass(frozen=True)
class FileRecord:
    """One stored file's metadata."""

    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    expires_at: int | None
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        """The ``OpenAIFile`` object."""
        data: dict[str, Any] = {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }
        if self.expires_at is not None:
            data["expires_at"] = self.expires_at
        return data


class IncomingBlob:
    """Content being received into ``tmp/`` (mode 0600); ``move_to`` lands it, else
    ``discard`` (a no-op once landed, so callers may discard everything they opened)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self.landed = False
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        self._file: IO[bytes] | None = os.fdopen(fd, "wb")  # closed by finish()/discard()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self._file is not None, "write after close"
        self._file.write(data)
        self.size += len(data)

    @classmethod
    def adopt(cls, path: Path, size: int) -> IncomingBlob:
        """A blob for content already whole on disk at ``path`` (in ``tmp/``, ``size``
        bytes, fsynced): nothing to write, ``move_to`` lands it, ``discard`` removes it."""
        blob = cls.__new__(cls)
        blob.path = path
        blob.size = size
        blob.landed = False
        blob._file = None
        return blob

    def append_file(self, source: Path, offset: int = 0, length: int | None = None) -> None:
        """Append ``length`` bytes of ``source`` from ``offset`` (default: to its end),
        copied in the kernel (``copy_file_range``) where it can be."""
        assert self._file is not None, "write after close"
        self._file.flush()
        with open(source, "rb") as src:
            if length is None:
                length = os.fstat(src.fileno()).st_size - offset
            remaining = length
            try:
                while remaining > 0:
                    copied = os.copy_file_range(
                        src.fileno(), self._file.fileno(), remaining, offset + length - remaining
                    )
                    if copied == 0:
                        break
                    remaining -= copied
                    self.size += copied
            except OSError:  # not supported here (old kernel, odd filesystem): plain copy
                src.seek(offset + length - remaining)
                while remaining > 0 and (chunk := src.read(min(1024 * 1024, remaining))):
                    self.write(chunk)
                    remaining -= len(chunk)
        self._file.seek(0, os.SEEK_END)

    def finish(self) -> None:
        """Flush and fsync: after this the bytes are on disk."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def move_to(self, target: Path) -> None:
        """Finish, then rename into ``target``: the blob is landed and no longer ours."""
        self.finish()
        self.path.rename(target)
        self.path = target
        self.landed = True

    def discard(self) -> None:
        """Close and remove the temp file, unless it landed; safe to call more than once."""
        if self._file is not None:
            with contextlib.suppress(OSError):  # a failed flush (full disk) still closes
                self._file.close()
            self._file = None
        if not self.landed:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def make_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0700; existing ones stay as
    they are (a ``--data`` directory the user made is theirs to set)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIR_MODE)
        directory.chmod(DIR_MODE)  # mkdir's mode is filtered by the umask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore:
    """Files on disk under one data directory (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        make_private_dir(root)
        for directory in (self.blobs, self.tmp):
            make_private_dir(directory)
            directory.chmod(DIR_MODE)  # ours: tighten a store made by an older version
        try:
            self._file_lock = FileLock(root / ".lock")
        except LockHeldError as exc:
            raise StoreLockedError(
                f"store {root} is in use by another syncd serve ({exc.holder or 'pid unknown'})"
            ) from None
        self._lock = threading.Lock()
        db_path = root / "files.db"
        os.close(os.open(db_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
        db_path.chmod(FILE_MODE)  # SQLite gives its -wal and -shm files the same mode
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._group = GroupCommit(self._db, self._lock)
        self._recover()

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._file_lock.release()

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """The store's connection inside BEGIN IMMEDIATE ... COMMIT, under its lock; the
        blocks of concurrent requests share one commit (``syncd.group_commit``), each
        durable when its block ends.

        Also for sibling stores (the Uploads API's) that keep their tables in files.db.
        """
        return self._group.transaction()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement, under the store's lock."""
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())

    def ensure_schema(self, schema: str) -> None:
        """Create a sibling store's tables (idempotent ``CREATE ... IF NOT EXISTS``)."""
        with self._lock:
            self._db.executescript(schema)

    def _recover(self) -> None:
        """Drop what an interrupted run left: temp files and blobs that never got a row."""
        for leftover in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
        with self._lock:
            live = {
                row[0] for row in self._db.execute("SELECT id FROM files WHERE deleted_at IS NULL")
            }
        for blob in self.blobs.iterdir():
            if blob.name not in live:
                with contextlib.suppress(OSError):
                    blob.unlink()
        self.purge_expired()

    def new_incoming(self) -> IncomingBlob:
        """A fresh temp file in the store to receive content into."""
        return IncomingBlob(self.tmp / f"{uuid.uuid4().hex}.part")

    def link_incoming(self, source: Path, size: int) -> IncomingBlob:
        """``source`` (whole and fsynced, ``size`` bytes) hard-linked into ``tmp/``: a blob
        that lands without copying a byte, while ``source`` keeps its own name until its
        owner removes it (a crash before the commit leaves ``source`` as it was)."""
        path = self.tmp / f"{uuid.uuid4().hex}.part"
        os.link(source, path)
        return IncomingBlob.adopt(path, size)

    def commit(
        self,
        incoming: IncomingBlob,
        *,
        filename: str,
        purpose: str,
        expires_after: int | None,
        file_id: str | None = None,
    ) -> FileRecord:
        """Land ``incoming`` as a new file and return it; the file is durable on return."""
        incoming.finish()
        file_id = file_id or new_id("file-")
        target = self.blobs / file_id
        incoming.move_to(target)
        _fsync_dir(self.blobs)
        now = int(clock.now())
        expires_at = now + expires_after if expires_after is not None else None
        try:
            with self.transaction() as db:
                cursor = db.execute(
                    "INSERT INTO files (id, filename, purpose, bytes, created_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (file_id, filename, purpose, incoming.size, now, expires_at),
                )
                seq = int(cursor.lastrowid or 0)
        except BaseException:
            with contextlib.suppress(OSError):
                target.unlink()
            raise
        return FileRecord(file_id, filename, purpose, incoming.size, now, expires_at, seq)

    @staticmethod
    def _record(row: tuple[Any, ...]) -> FileRecord:
        return FileRecord(
            id=row[0],
            filename=row[1],
            purpose=row[2],
            bytes=row[3],
            created_at=row[4],
            expires_at=row[5],
            seq=row[6],
        )

    _COLUMNS = "id, filename, purpose, bytes, created_at, expires_at, seq"
    _LIVE = "deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"

    def get(self, file_id: str) -> FileRecord | None:
        """The live file with this id, or None (unknown, deleted or expired)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM files WHERE id = ? AND {self._LIVE}",  # noqa: S608
                (file_id, int(clock.now())),
            ).fetchone()
        return self._record(row) if row else None

    def cursor_position(self, file_id: str) -> tuple[int, int] | None:
        """(created_at, seq) of any file ever stored with this id, live or not."""
        with self._lock:
            row = self._db.execute(
                "SELECT created_at, seq FROM files WHERE id = ?", (file_id,)
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def list(
        self,
        *,
        purpose: str | None,
        order: str,
        after: tuple[int, int] | None,
        limit: int,
    ) -> tuple[list[FileRecord], bool]:
        """One page of live files and whether more follow it."""
        direction = "DESC" if order == "desc" else "ASC"
        clauses = [self._LIVE]
        params: list[Any] = [int(clock.now())]
        if purpose is not None:
            clauses.append("purpose = ?")
            params.append(purpose)
        if after is not None:
            clauses.append(
                "(created_at, seq) < (?, ?)" if order == "desc" else "(created_at, seq) > (?, ?)"
            )
            params.extend(after)
        sql = (
            f"SELECT {self._COLUMNS} FROM files WHERE {' AND '.join(clauses)}"  # noqa: S608
            f" ORDER BY created_at {direction}, seq {direction} LIMIT ?"
        )
        params.append(limit + 1)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        records = [self._record(row) for row in rows[:limit]]
        return records, len(rows) > limit

    def delete(self, file_id: str) -> bool:
        """Delete a live file; False if there was none. The row stays as a tombstone."""
        with self.transaction() as db:
            cursor = db.execute(
                f"UPDATE files SET deleted_at = ? WHERE id = ? AND {self._LIVE}",  # noqa: S608
                (int(clock.now()), file_id, int(clock.now())),
            )
            deleted = cursor.rowcount > 0
        if deleted:
            with contextlib.suppress(FileNotFoundError):
                (self.blobs / file_id).unlink()
        return deleted

    def open_content(self, file_id: str) -> tuple[FileRecord, IO[bytes]] | None:
        """The live file and an open handle on its content (valid even if deleted later)."""
        record = self.get(file_id)
        if record is None:
            return None
        try:
            handle = open(self.blobs / file_id, "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            return None  # deleted between the lookup and the open
        return record, handle

    def purge_expired(self) -> int:
        """Remove the content of expired files and forget old tombstones; returns a count."""
        now = int(clock.now())
        with self.transaction() as db:
            expired = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM files WHERE deleted_at IS NULL AND expires_at <= ?", (now,)
                )
            ]
            db.execute(
                "UPDATE files SET deleted_at = ? WHERE deleted_at IS NULL AND expires_at <= ?",
                (now, now),
            )
            db.execute(
                "DELETE FROM files WHERE deleted_at IS NOT NULL AND deleted_at < ?",
                (now - TOMBSTONE_KEEP_SECONDS,),
            )
        for file_id in expired:
            with contextlib.suppress(FileNotFoundError):
                (self.blobs / file_id).unlink()
        return len(expired)
