"""The ledger: the only SQL in syncd. Facts about each mirrored path, and intents.

One SQLite file per mirrored folder (WAL, mode 0600, ``synchronous=FULL`` because an
intent must be on disk before its request leaves). Tables:

- ``files``: one row per path syncd tracks (relative, ``/``-separated): the local
  fingerprint (size, mtime_ns, inode, sha256) of the content that the remote file
  ``file_id`` holds, plus the last error, attempts, backoff and the fingerprint of the
  content that last failed (so a permanent failure is not retried until the file changes).
- ``intents``: write-ahead records. An upload intent is committed *before* the request;
  its outcome and the path's new ``files`` row commit in one transaction, together with a
  delete intent for the version it replaces. An open intent after a crash is reconciled
  (see ``syncd.sync.engine``) before anything else happens.
- ``dirty``: the daemon's durable queue of paths to look at again.
- ``passes``: one row per pass, for ``syncd status``.
- ``multipart_uploads``/``multipart_parts``: large files being sent through the Uploads
  API, with the parts the server confirmed, so that a restart sends only the rest.
- ``meta``: the schema version and facts about the mirror: its folder's identity, and
  the remote it mirrors to (``syncd.sync.binding``; never the key).

The schema is declared once in ``syncd.state.schema``, which creates and migrates it.

One process at a time: a lock file beside the ledger is held (``syncd.state.lock``) for
the process lifetime and names its holder, so a second process gets ``LedgerLockedError``.
Readers (``syncd status``) open read-only without the lock; WAL lets them read while the
owner writes. One connection is shared by the executor's workers behind one lock.
The API key is never stored here.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from syncd.api import RemoteFile
from syncd.errors import LedgerLockedError, SyncdError
from syncd.local.fingerprint import Fingerprint
from syncd.state.deletes import DeleteRecords
from syncd.state.lock import FileLock, LockHeldError
from syncd.state.schema import SCHEMA_VERSION, ensure_schema, schema_version

BACKOFF_FIRST_SECONDS = 60.0
BACKOFF_MAX_SECONDS = 3600.0


class IntentKind(StrEnum):
    UPLOAD = "upload"
    DELETE = "delete"


class IntentState(StrEnum):
    OPEN = "open"  # written before its request; the outcome is not known yet
    DONE = "done"  # carried out, and its outcome recorded
    FAILED = "failed"  # closed without effect (it provably left nothing behind)


class ErrorKind(StrEnum):
    """How a path's last upload failed: retried after a backoff, or not until it changes."""

    RETRYABLE = "retryable"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class LedgerRow:
    """One row of ``files``: what syncd knows about one path."""

    path: str
    size: int | None = None
    mtime_ns: int | None = None
    inode: int | None = None
    sha256: str | None = None
    purpose: str | None = None
    file_id: str | None = None
    remote_bytes: int | None = None
    remote_filename: str | None = None
    uploaded_at: float | None = None
    expires_at: int | None = None
    last_error: str | None = None
    error_kind: str | None = None  # an ErrorKind value, or None
    attempts: int = 0
    next_attempt_at: float | None = None
    failed_sha256: str | None = None
    failed_size: int | None = None
    failed_mtime_ns: int | None = None
    failed_inode: int | None = None


@dataclass(frozen=True)
class Intent:
    """One row of ``intents``: an action that was about to run (or ran)."""

    id: int
    kind: IntentKind
    path: str
    state: IntentState
    started_at: float
    filename: str | None = None
    purpose: str | None = None
    expires_after: int | None = None
    sha256: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    inode: int | None = None
    replaces: str | None = None
    file_id: str | None = None
    finished_at: float | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class MultipartRecord:
    """One upload in progress through the Uploads API, resumable while it is pending.

    It belongs to one content of one path (``path``, ``sha256``, ``size``) sent with
    ``purpose``, ``filename`` and ``expires_after``; ``parts`` maps a part's index (its
    offset is ``index * part_size``) to the part id and byte count the server confirmed.
    ``expires_at`` is when the server drops it (unix time).
    """

    upload_id: str
    path: str
    sha256: str
    size: int
    purpose: str
    filename: str
    expires_after: int | None
    part_size: int
    created_at: float
    expires_at: float
    md5: str | None = None
    parts: dict[int, tuple[str, int]] = field(default_factory=dict)


_MULTIPART_FIELDS = tuple(f.name for f in fields(MultipartRecord) if f.name != "parts")
_ROW_FIELDS = tuple(f.name for f in fields(LedgerRow))
_ROWS_SQL = f"SELECT {', '.join(_ROW_FIELDS)} FROM files"  # noqa: S608 - field names
_INTENT_FIELDS = tuple(f.name for f in fields(Intent))
# What ``refresh`` clears: the record of the last failure.
_FAILURE_COLUMNS = (
    "last_error",
    "error_kind",
    "next_attempt_at",
    "failed_sha256",
    "failed_size",
    "failed_mtime_ns",
    "failed_inode",
)


def backoff_seconds(attempts: int) -> float:
    """Wait before retry number ``attempts`` (1 min, doubling, at most 1 h)."""
    return min(BACKOFF_FIRST_SECONDS * 2.0 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)


class Ledger(DeleteRecords):
    """The ledger of one mirrored folder. Thread-safe: every access holds one lock.
    Refusals, approvals and delayed deletes: ``syncd.state.deletes``."""

    def __init__(self, conn: sqlite3.Connection, path: Path, lock: FileLock | None) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()
        self._file_lock = lock

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (creating if needed) and lock the ledger at ``path``, migrating it."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = _lock(path)
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            ledger = cls(conn, path, lock)
            ledger._migrate()
        except sqlite3.DatabaseError as exc:
            lock.release()
            raise SyncdError(f"ledger {path} is unreadable: {exc}") from None
        except BaseException:
            lock.release()
            raise
        return ledger

    @classmethod
    def open_readonly(cls, path: Path) -> Ledger:
        """Open an existing ledger for reading while its owner may be writing it."""
        if not path.is_file():
            raise SyncdError(f"no ledger at {path}")
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout=5000")
            ledger = cls(conn, path, None)
            if ledger.schema_version() > SCHEMA_VERSION:
                raise SyncdError(f"ledger {path} was written by a newer syncd")
        except sqlite3.DatabaseError as exc:
            raise SyncdError(f"ledger {path} is unreadable: {exc}") from None
        return ledger

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._file_lock is not None:
                self._file_lock.release()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        with self._lock:
            return schema_version(self._conn)

    def _migrate(self) -> None:
        with self._write() as conn:
            version = schema_version(conn)
            if version > SCHEMA_VERSION:
                raise SyncdError(f"ledger {self.path} was written by a newer syncd")
            if version < SCHEMA_VERSION:
                ensure_schema(conn, version)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; everything inside commits together or not at all."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._conn.execute(sql, tuple(params))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]

    # -- files -------------------------------------------------------------------------

    def rows(self) -> dict[str, LedgerRow]:
        """Every tracked path and its row."""
        # Columns named in field order, rows built from the tuples: a third faster than
        # going through a dict per row, which counts on a no-change pass of 100,000 files.
        with self._lock:
            cursor = self._conn.execute(_ROWS_SQL)
            return {values[0]: LedgerRow(*values) for values in cursor.fetchall()}

    def rows_for(self, paths: Iterable[str]) -> dict[str, LedgerRow]:
        """The rows of ``paths`` and of every path below them (a path may be a directory)."""
        found: dict[str, LedgerRow] = {}
        for path in set(paths):
            prefix = path.rstrip("/") + "/"
            sql = "SELECT * FROM files WHERE path = ? OR substr(path, 1, ?) = ?"
            for r in self._query(sql, (path, len(prefix), prefix)):
                found[r["path"]] = _row(r)
        return found

    def row(self, path: str) -> LedgerRow | None:
        result = self._query("SELECT * FROM files WHERE path = ?", (path,))
        return _row(result[0]) if result else None

    def tracked_count(self) -> int:
        """How many paths have a remote file (the mass-delete guard's denominator)."""
        return int(self._query("SELECT count(*) AS n FROM files WHERE file_id IS NOT NULL")[0]["n"])

    def known_file_ids(self) -> set[str]:
        """Every remote id the ledger refers to: tracked rows and unfinished deletes."""
        ids = {r["file_id"] for r in self._query("SELECT file_id FROM files")}
        ids |= {
            r["file_id"]
            for r in self._query("SELECT file_id FROM intents WHERE state = ?", (IntentState.OPEN,))
        }
        ids.discard(None)
        return ids

    def retrying_content(self) -> set[tuple[str | None, int | None]]:
        """(SHA-256, size) of the content of every path waiting to retry a failed upload
        (the hash is None when the file failed before it was hashed)."""
        sql = "SELECT failed_sha256, failed_size FROM files WHERE error_kind = ?"
        rows = self._query(sql, (ErrorKind.RETRYABLE,))
        return {(r["failed_sha256"], r["failed_size"]) for r in rows}

    def refresh(self, path: str, fingerprint: Fingerprint) -> None:
        """Same content as mirrored, new stat (touched, or changed back after a failure):
        remember the new stat and clear any error."""
        with self._write() as conn:
            conn.execute(
                """UPDATE files SET size = ?, mtime_ns = ?, inode = ?, last_error = NULL,
                   error_kind = NULL, attempts = 0, next_attempt_at = NULL,
                   failed_sha256 = NULL, failed_size = NULL, failed_mtime_ns = NULL,
                   failed_inode = NULL WHERE path = ?""",
                (fingerprint.size, fingerprint.mtime_ns, fingerprint.inode, path),
            )

    def refresh_many(self, refreshed: Sequence[tuple[str, Fingerprint]]) -> None:
        """``refresh`` for many paths in one transaction: a pass that finds thousands of
        touched files (a ``touch -r``, a restore, a copy that kept the content) writes
        them with one fsync instead of one each (sqlite-utils' ``upsert_all``, in batches)."""
        if not refreshed:
            return
        from sqlite_utils import Database  # imported only when a pass refreshes rows

        cleared = dict.fromkeys(_FAILURE_COLUMNS)
        records = [
            {"path": path, "size": fp.size, "mtime_ns": fp.mtime_ns, "inode": fp.inode}
            | cleared
            | {"attempts": 0}
            for path, fp in refreshed
        ]
        with self._write() as conn:
            db = Database(conn, recursive_triggers=False, execute_plugins=False)
            db.table("files").upsert_all(records, pk="path")

    def forget(self, path: str, file_id: str | None) -> None:
        """Drop a row whose remote file is gone (or never existed)."""
        with self._write() as conn:
            conn.execute("DELETE FROM files WHERE path = ? AND file_id IS ?", (path, file_id))

    def record_failure(
        self,
        path: str,
        fingerprint: Fingerprint,
        reason: str,
        *,
        permanent: bool,
        now: float,
        retry_after: float | None = None,
        intent_id: int | None = None,
    ) -> LedgerRow:
        """Remember that this content of ``path`` failed (and close its intent, if any).

        A permanent failure is not retried until the fingerprint changes; a retryable one
        waits ``backoff_seconds(attempts)`` (or the server's longer Retry-After).
        """
        with self._write() as conn:
            if intent_id is not None:
                _finish_intent(conn, intent_id, IntentState.FAILED, now, reason)
            conn.execute("INSERT OR IGNORE INTO files (path) VALUES (?)", (path,))
            attempts = (
                conn.execute("SELECT attempts FROM files WHERE path = ?", (path,)).fetchone()[0] + 1
            )
            wait = max(backoff_seconds(attempts), retry_after or 0.0)
            conn.execute(
                """UPDATE files SET last_error = ?, error_kind = ?, attempts = ?,
                   next_attempt_at = ?, failed_sha256 = ?, failed_size = ?,
                   failed_mtime_ns = ?, failed_inode = ? WHERE path = ?""",
                (
                    reason,
                    ErrorKind.PERMANENT if permanent else ErrorKind.RETRYABLE,
                    attempts,
                    None if permanent else now + wait,
                    fingerprint.sha256,
                    fingerprint.size,
                    fingerprint.mtime_ns,
                    fingerprint.inode,
                    path,
                ),
            )
            result = conn.execute("SELECT * FROM files WHERE path = ?", (path,))
            names = [d[0] for d in result.description]
            return _row(dict(zip(names, result.fetchone(), strict=True)))

    # -- intents -----------------------------------------------------------------------

    def begin_upload(
        self,
        path: str,
        fingerprint: Fingerprint,
        *,
        filename: str,
        purpose: str,
        expires_after: int | None,
        replaces: str | None,
        now: float,
    ) -> int:
        """Commit the intent to upload this content, before the request is sent."""
        with self._write() as conn:
            cursor = conn.execute(
                """INSERT INTO intents (kind, path, filename, purpose, expires_after, sha256,
                   size, mtime_ns, inode, replaces, started_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    IntentKind.UPLOAD,
                    path,
                    filename,
                    purpose,
                    expires_after,
                    fingerprint.sha256,
                    fingerprint.size,
                    fingerprint.mtime_ns,
                    fingerprint.inode,
                    replaces,
                    now,
                ),
            )
            return int(cursor.lastrowid or 0)

    def complete_upload(
        self, intent_id: int, remote: RemoteFile, *, stale: bool, now: float
    ) -> list[Intent]:
        """In one transaction: close the intent, point the path's row at ``remote`` and
        open delete intents for the version(s) it replaces. Returns those delete intents.

        ``stale`` means the file changed while it was uploaded: the row records the new
        remote id but no hash, so the next plan sees "changed" and uploads again.
        """
        with self._write() as conn:
            intent = _intent_by_id(conn, intent_id)
            old = conn.execute("SELECT file_id FROM files WHERE path = ?", (intent.path,))
            old_row = old.fetchone()
            candidates: list[str | None] = [intent.replaces, old_row[0] if old_row else None]
            old_ids = {c for c in candidates if c is not None and c != remote.id}
            _finish_intent(conn, intent_id, IntentState.DONE, now, "uploaded", file_id=remote.id)
            conn.execute("DELETE FROM files WHERE path = ?", (intent.path,))
            conn.execute(
                """INSERT INTO files (path, size, mtime_ns, inode, sha256, purpose, file_id,
                   remote_bytes, remote_filename, uploaded_at, expires_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    intent.path,
                    intent.size,
                    intent.mtime_ns,
                    intent.inode,
                    None if stale else intent.sha256,
                    remote.purpose or intent.purpose,
                    remote.id,
                    remote.bytes,
                    remote.filename,
                    now,
                    remote.expires_at,
                ),
            )
            return [_insert_delete(conn, intent.path, old_id, now) for old_id in sorted(old_ids)]

    def begin_delete(self, path: str, file_id: str, *, now: float) -> Intent:
        """Commit the intent to delete ``file_id`` (syncd's own copy of ``path``)."""
        with self._write() as conn:
            return _insert_delete(conn, path, file_id, now)

    def complete_delete(self, intent_id: int, *, now: float) -> None:
        """The remote file is gone: close the intent; drop the row if it still names it."""
        with self._write() as conn:
            intent = _intent_by_id(conn, intent_id)
            _finish_intent(conn, intent_id, IntentState.DONE, now, "deleted")
            conn.execute(
                "DELETE FROM files WHERE path = ? AND file_id = ?", (intent.path, intent.file_id)
            )

    def abandon_intent(self, intent_id: int, reason: str, *, now: float) -> None:
        """Close an intent that provably left nothing behind (or was already handled)."""
        with self._write() as conn:
            _finish_intent(conn, intent_id, IntentState.FAILED, now, reason)

    def open_intents(self) -> list[Intent]:
        """Intents that started but whose outcome was never recorded (oldest first)."""
        return [
            _intent(r)
            for r in self._query(
                "SELECT * FROM intents WHERE state = ? ORDER BY id", (IntentState.OPEN,)
            )
        ]

    def closed_uploads(self, outcome: str, *, since: float) -> list[Intent]:
        """Upload intents closed with ``outcome`` at or after ``since`` (oldest first)."""
        sql = """SELECT * FROM intents WHERE kind = ? AND state != ?
                 AND outcome = ? AND finished_at >= ? ORDER BY id"""
        params = (IntentKind.UPLOAD, IntentState.OPEN, outcome, since)
        return [_intent(r) for r in self._query(sql, params)]

    def prune_intents(self, older_than: float) -> None:
        """Forget finished intents that ended before ``older_than`` (unix time)."""
        with self._write() as conn:
            conn.execute(
                "DELETE FROM intents WHERE state != ? AND finished_at < ?",
                (IntentState.OPEN, older_than),
            )

    # -- resumable uploads (Uploads API) ---------------------------------------------

    def multipart_uploads(self, path: str | None = None) -> list[MultipartRecord]:
        """The uploads in progress (of ``path``, or all), oldest first, with their parts."""
        where, params = ("WHERE path = ?", (path,)) if path is not None else ("", ())
        uploads = self._query(
            f"SELECT * FROM multipart_uploads {where} ORDER BY created_at, upload_id",  # noqa: S608
            params,
        )
        records = []
        for upload in uploads:
            parts = self._query(
                "SELECT part_index, part_id, bytes FROM multipart_parts WHERE upload_id = ?",
                (upload["upload_id"],),
            )
            records.append(
                MultipartRecord(
                    **{name: upload[name] for name in _MULTIPART_FIELDS},
                    parts={p["part_index"]: (p["part_id"], p["bytes"]) for p in parts},
                )
            )
        return records

    def begin_multipart(self, record: MultipartRecord) -> None:
        """Remember a freshly created upload (before any part is sent)."""
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO multipart_uploads ({', '.join(_MULTIPART_FIELDS)}) "  # noqa: S608
                f"VALUES ({', '.join('?' * len(_MULTIPART_FIELDS))})",
                tuple(getattr(record, name) for name in _MULTIPART_FIELDS),
            )

    def record_part(self, upload_id: str, index: int, part_id: str, size: int) -> None:
        """A part the server confirmed: it is not sent again when the upload resumes."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO multipart_parts (upload_id, part_index, part_id, bytes)"
                " VALUES (?, ?, ?, ?)",
                (upload_id, index, part_id, size),
            )

    def set_multipart_md5(self, upload_id: str, md5: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE multipart_uploads SET md5 = ? WHERE upload_id = ?", (md5, upload_id)
            )

    def drop_multipart(self, upload_id: str) -> None:
        """Forget an upload (completed, cancelled, expired or abandoned) and its parts."""
        with self._write() as conn:
            conn.execute("DELETE FROM multipart_parts WHERE upload_id = ?", (upload_id,))
            conn.execute("DELETE FROM multipart_uploads WHERE upload_id = ?", (upload_id,))

    # -- the daemon's durable queue ------------------------------------------------------

    def mark_dirty(self, paths: Iterable[str], *, now: float | None = None) -> None:
        """Queue paths to be looked at again (survives a crash)."""
        stamp = time.time() if now is None else now
        with self._write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO dirty (path, queued_at) VALUES (?, ?)",
                [(p, stamp) for p in paths],
            )

    def dirty_paths(self) -> dict[str, float]:
        """Queued paths and when each was (last) queued."""
        return {r["path"]: r["queued_at"] for r in self._query("SELECT * FROM dirty")}

    def clear_dirty(self, paths: Iterable[str], *, queued_before: float) -> None:
        """Unqueue handled paths, keeping any that were queued again after the pass began."""
        with self._write() as conn:
            conn.executemany(
                "DELETE FROM dirty WHERE path = ? AND queued_at <= ?",
                [(p, queued_before) for p in paths],
            )

    # -- passes --------------------------------------------------------------------------

    def start_pass(self, *, now: float) -> int:
        with self._write() as conn:
            cursor = conn.execute("INSERT INTO passes (started_at) VALUES (?)", (now,))
            return int(cursor.lastrowid or 0)

    def finish_pass(self, pass_id: int, *, result: str, summary: str, now: float) -> None:
        """Record how a pass ended; keeps the last 1,000 passes."""
        with self._write() as conn:
            conn.execute(
                "UPDATE passes SET finished_at = ?, result = ?, summary = ? WHERE id = ?",
                (now, result, summary, pass_id),
            )
            conn.execute("DELETE FROM passes WHERE id <= ?", (pass_id - 1000,))

    def last_pass(self) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM passes ORDER BY id DESC LIMIT 1")
        return dict(rows[0]) if rows else None

    # -- meta and status -----------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    def forget_remote(self, reason: str, *, now: float) -> int:
        """Forget all the ledger knows of its remote, in one transaction: every ``files``
        row (the next pass uploads every file again), every open intent (closed as
        failed with ``reason``) and every upload in parts. The dirty queue and the
        passes stay. Returns how many remote copies were forgotten."""
        with self._write() as conn:
            copies = conn.execute(
                "SELECT count(*) FROM files WHERE file_id IS NOT NULL"
            ).fetchone()[0]
            conn.execute("DELETE FROM files")
            conn.execute(
                "UPDATE intents SET state = ?, finished_at = ?, outcome = ? WHERE state = ?",
                (IntentState.FAILED, now, reason, IntentState.OPEN),
            )
            conn.execute("DELETE FROM multipart_parts")
            conn.execute("DELETE FROM multipart_uploads")
            return int(copies)

    def status(self) -> LedgerStatus:
        """Counts for ``syncd status``: mirrored, pending and failed paths."""
        counts = self._query(
            """SELECT
                 sum(file_id IS NOT NULL AND sha256 IS NOT NULL AND error_kind IS NULL)
                   AS mirrored,
                 coalesce(sum(CASE WHEN file_id IS NOT NULL THEN remote_bytes END), 0)
                   AS bytes,
                 sum(error_kind = ? OR (file_id IS NOT NULL AND sha256 IS NULL))
                   AS retrying,
                 sum(error_kind = ?) AS failed
               FROM files""",
            (ErrorKind.RETRYABLE, ErrorKind.PERMANENT),
        )[0]
        queued = self._query(  # each path once: not those counted as failing or open
            "SELECT count(*) AS n FROM dirty WHERE path NOT IN "
            "(SELECT path FROM files WHERE error_kind IS NOT NULL) AND path NOT IN "
            "(SELECT path FROM intents WHERE state = ?)",
            (IntentState.OPEN,),
        )[0]["n"]
        problems = self._query(
            "SELECT * FROM files WHERE error_kind IS NOT NULL ORDER BY error_kind, path"
        )
        return LedgerStatus(
            mirrored=int(counts["mirrored"] or 0),
            bytes=int(counts["bytes"] or 0),
            retrying=int(counts["retrying"] or 0),
            failed=int(counts["failed"] or 0),
            queued=int(queued),
            open_intents=len(self.open_intents()),
            problem_rows=[_row(r) for r in problems],
            last_pass=self.last_pass(),
        )


@dataclass(frozen=True)
class LedgerStatus:
    mirrored: int
    bytes: int
    retrying: int  # retryable failures waiting for their backoff, or stale uploads
    failed: int  # permanent failures, waiting for the file to change
    queued: int  # dirty paths not yet handled
    open_intents: int
    problem_rows: list[LedgerRow]
    last_pass: dict[str, Any] | None

    @property
    def pending(self) -> int:
        return self.retrying + self.queued + self.open_intents


def _row(data: Any) -> LedgerRow:
    return LedgerRow(**{name: data[name] for name in _ROW_FIELDS})


def _intent(data: Any) -> Intent:
    values = {name: data[name] for name in _INTENT_FIELDS}
    values["kind"] = IntentKind(values["kind"])
    values["state"] = IntentState(values["state"])
    return Intent(**values)


def _lock(ledger: Path) -> FileLock:
    """The lock beside ``ledger``; LedgerLockedError naming the holder if it is taken."""
    try:
        return FileLock(ledger.with_name(ledger.name + ".lock"))
    except LockHeldError as exc:
        raise LedgerLockedError(
            f"ledger {ledger.with_suffix('')} is in use by another syncd process "
            f"({exc.holder or 'pid unknown'}); stop it first or use another --state"
        ) from None


def _intent_by_id(conn: sqlite3.Connection, intent_id: int) -> Intent:
    cursor = conn.execute("SELECT * FROM intents WHERE id = ?", (intent_id,))
    names = [d[0] for d in cursor.description]
    values = cursor.fetchone()
    if values is None:
        raise SyncdError(f"ledger has no intent {intent_id}")
    return _intent(dict(zip(names, values, strict=True)))


def _finish_intent(
    conn: sqlite3.Connection,
    intent_id: int,
    state: IntentState,
    now: float,
    outcome: str,
    *,
    file_id: str | None = None,
) -> None:
    conn.execute(
        """UPDATE intents SET state = ?, finished_at = ?, outcome = ?,
           file_id = coalesce(?, file_id) WHERE id = ?""",
        (state, now, outcome, file_id, intent_id),
    )


def _insert_delete(conn: sqlite3.Connection, path: str, file_id: str, now: float) -> Intent:
    cursor = conn.execute(
        "INSERT INTO intents (kind, path, file_id, started_at) VALUES (?, ?, ?, ?)",
        (IntentKind.DELETE, path, file_id, now),
    )
    return _intent_by_id(conn, int(cursor.lastrowid or 0))
