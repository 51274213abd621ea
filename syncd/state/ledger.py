"""The ledger: syncd's SQL (with ``vector_ledger``). Facts about each mirrored path, intents.

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
- ``candidates``: remote files that may be syncd's but are kept because that cannot be
  proven (another writer may have made them): reported, never adopted or deleted.
- ``meta``: the schema version and facts about the mirror: its folder's identity, the
  remote it mirrors to (``syncd.sync.binding``; never the key), the ``heartbeat`` (the
  last sign of life of a process with uploads in flight) and the measured
  ``server_clock`` offset.
- ``vector_stores``/``vector_attachments``: the vector store the mirror keeps and each
  attachment's state (``syncd.state.vector_ledger``, which owns their SQL).

Every ledger opened for writing is registered in the state home
(``syncd.state.registry``); ``other_claims`` reads every other registered ledger,
read-only and without its lock, for what it has recorded or may have uploaded.

The schema is declared once in ``syncd.state.schema``, which creates and migrates it.

One process at a time: a lock file beside the ledger is held (``syncd.state.lock``) for
the process lifetime and names its holder, so a second process gets ``LedgerLockedError``.
Neither the ledger nor its lock is ever opened through a symbolic link: the lock with
``O_NOFOLLOW``; the ledger is looked at with ``lstat`` first (a link, or SQLite's
``-wal``/``-shm`` as one, is a ``ConfigError``) and created with ``O_EXCL|O_NOFOLLOW``.
SQLite then opens it by name, which is safe because the state directory has been
checked (``syncd.paths.check_state_dir``): nobody else can swap a link in between.
Readers (``syncd status``) open read-only without the lock; WAL lets them read while the
owner writes. One connection is shared by the executor's workers behind one lock.
The API key is never stored here: error texts are redacted (``syncd.log.redact_text``)
before they are written, as a last line of defence behind the transport's scrubbing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog

from syncd.api import RemoteFile
from syncd.errors import ConfigError, LedgerLockedError, LockHeldError, SyncdError
from syncd.group_commit import GroupCommit
from syncd.local.fingerprint import Fingerprint
from syncd.log import redact_text
from syncd.paths import check_state_dir
from syncd.state.deletes import DeleteRecords
from syncd.state.lock import FileLock
from syncd.state.registry import LedgerRegistry
from syncd.state.schema import SCHEMA_VERSION, ensure_schema, schema_version
from syncd.state.vector_ledger import serving_versions

BACKOFF_FIRST_SECONDS = 60.0
# meta: the mirrored folder's absolute path, as the last sync or run of it named it.
META_FOLDER = "folder"
BACKOFF_MAX_SECONDS = 3600.0
# The outcome of an upload intent closed without adopting a copy: it stored nothing, or
# nothing it provably stored (an older attempt of the path, or kept candidates).
NOT_STORED = "superseded or not stored"
META_HEARTBEAT = "heartbeat"

log = structlog.get_logger(__name__)


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
    gave_up_at: float | None = None  # an upload that ended ambiguous: when the client gave up
    alive_at: float | None = None  # one a crash left open: its process's last sign of life
    time_limit: float | None = None  # how long after that it could still be received


class CandidateState(StrEnum):
    UNRESOLVED = "unresolved"  # possibly syncd's: kept and reported
    DISMISSED = "dismissed"  # the user said it is not syncd's


@dataclass(frozen=True)
class CandidateRow:
    """One row of ``candidates``: a remote file that may be syncd's, kept (see the
    module docstring)."""

    file_id: str
    path: str
    filename: str | None
    bytes: int | None
    created_at: int | None
    purpose: str | None
    reason: str | None
    found_at: float
    state: str = CandidateState.UNRESOLVED


@dataclass(frozen=True)
class ForeignUpload:
    """An upload of another ledger of this host whose outcome is open or was not
    adopted: what it sent and its window's ends (see ``syncd.sync.ownership``)."""

    ledger: Path
    filename: str
    size: int
    started_at: float
    gave_up_at: float | None
    alive_at: float | None
    time_limit: float | None


@dataclass
class Claims:
    """What other ledgers of this host say about remote files."""

    file_ids: set[str] = field(default_factory=set)  # theirs: never a candidate of ours
    doubtful: set[str] = field(default_factory=set)  # their kept candidates
    uploads: list[ForeignUpload] = field(default_factory=list)

    def merge(self, other: Claims) -> None:
        self.file_ids |= other.file_ids
        self.doubtful |= other.doubtful
        self.uploads += other.uploads


class _FromEnvironment:
    """``Ledger.open``'s default registry: the state home of ``os.environ``."""


FROM_ENVIRONMENT = _FromEnvironment()


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
_CANDIDATE_FIELDS = tuple(f.name for f in fields(CandidateRow))
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

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        lock: FileLock | None,
        registry: LedgerRegistry | None = None,
    ) -> None:
        self.path = path
        self.registry = registry
        self._conn = conn
        self._lock = threading.RLock()
        self._file_lock = lock
        self._group = GroupCommit(conn, self._lock)

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        registry: LedgerRegistry | _FromEnvironment | None = FROM_ENVIRONMENT,
    ) -> Ledger:
        """Open (creating if needed) and lock the ledger at ``path``, migrating it.

        The ledger is registered in ``registry`` (by default the state home of the
        environment; None: neither registered nor aware of other ledgers, for tests).
        Upload intents a crash left open get their last sign of life (``alive_at``,
        from the heartbeat): holding the lock, this process is the first since.
        ``ConfigError`` for an unsafe state directory or a link where a file belongs.
        """
        if isinstance(registry, _FromEnvironment):
            registry = LedgerRegistry.from_env(os.environ)
        check_state_dir(path.parent, writing=True)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = lock_ledger(path)
        try:
            _create_or_check(path)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            ledger = cls(conn, path, lock, registry)
            ledger._migrate()
            ledger._seal_crashed_uploads()
            if registry is not None:
                registry.register(path)
        except sqlite3.DatabaseError as exc:
            lock.release()
            raise SyncdError(f"ledger {path} is unreadable: {exc}") from None
        except BaseException:
            lock.release()
            raise
        return ledger

    @classmethod
    def open_readonly(cls, path: Path) -> Ledger:
        """Open an existing ledger for reading while its owner may be writing it (never
        through a link; ``ConfigError`` for a state directory others may write)."""
        check_state_dir(path.parent, writing=False)
        try:
            st = path.lstat()
        except OSError:
            raise SyncdError(f"no ledger at {path}") from None
        _refuse_link(path, st)
        if not stat.S_ISREG(st.st_mode):
            raise SyncdError(f"no ledger at {path}")
        try:
            conn = sqlite3.connect(
                f"{path.absolute().as_uri()}?mode=ro", uri=True, check_same_thread=False
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

    def _seal_crashed_uploads(self) -> None:
        """Give every upload intent left open by a dead process (no ``gave_up_at``) its
        last sign of life: the heartbeat, or its own start if later."""
        with self._write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_HEARTBEAT,))
            found = row.fetchone()
            heartbeat = float(found[0]) if found else None
            conn.execute(
                """UPDATE intents SET alive_at = max(started_at, coalesce(?, started_at))
                   WHERE state = ? AND kind = ? AND gave_up_at IS NULL AND alive_at IS NULL""",
                (heartbeat, IntentState.OPEN, IntentKind.UPLOAD),
            )

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction; everything inside commits together or not at all, and is
        on disk when the block has ended. Blocks of several workers share one commit
        (``syncd.group_commit``): one fsync for a group instead of one each."""
        return self._group.transaction()

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
            values = self._conn.execute(_ROWS_SQL).fetchall()
        return {v[0]: _row_of(v) for v in values}

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
        """Every remote id the ledger refers to: tracked rows, unfinished deletes,
        candidates (kept or dismissed: never matched again), and files attached to a
        vector store (old versions kept until their successor is indexed among them)."""
        ids = {r["file_id"] for r in self._query("SELECT file_id FROM files")}
        ids |= {
            r["file_id"]
            for r in self._query("SELECT file_id FROM intents WHERE state = ?", (IntentState.OPEN,))
        }
        ids |= {r["file_id"] for r in self._query("SELECT file_id FROM candidates")}
        ids |= {r["file_id"] for r in self._query("SELECT file_id FROM vector_attachments")}
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
                    redact_text(reason),
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
        time_limit: float | None = None,
    ) -> int:
        """Commit the intent to upload this content, before the request is sent.
        ``time_limit``: how long after the sending process's last sign of life the
        request could still be received (see ``syncd.sync.ownership``)."""
        with self._write() as conn:
            cursor = conn.execute(
                """INSERT INTO intents (kind, path, filename, purpose, expires_after, sha256,
                   size, mtime_ns, inode, replaces, started_at, time_limit)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
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
                    time_limit,
                ),
            )
            return int(cursor.lastrowid or 0)

    def record_gave_up(self, intent_id: int, *, now: float) -> None:
        """The upload's answer was lost: the client gave up at ``now`` (the end of the
        window in which it can have stored a file). The intent stays open."""
        with self._write() as conn:
            conn.execute("UPDATE intents SET gave_up_at = ? WHERE id = ?", (now, intent_id))

    def heartbeat(self, *, now: float) -> None:
        """Record a sign of life while uploads are in flight (one small write)."""
        self.set_meta(META_HEARTBEAT, repr(now))

    def complete_upload(
        self, intent_id: int, remote: RemoteFile, *, stale: bool, now: float
    ) -> list[Intent]:
        """In one transaction: close the intent, point the path's row at ``remote`` and
        open delete intents for the version(s) it replaces. Returns those delete intents.
        A replaced version attached to a vector store gets none: it stays (its attachment
        refers to it) until ``syncd.sync.vectors`` has the new one indexed.

        ``stale`` means the file changed while it was uploaded: the row records the new
        remote id but no hash, so the next plan sees "changed" and uploads again.
        """
        with self._write() as conn:
            intent = _intent_by_id(conn, intent_id)
            old = conn.execute("SELECT file_id FROM files WHERE path = ?", (intent.path,))
            old_row = old.fetchone()
            candidates: list[str | None] = [intent.replaces, old_row[0] if old_row else None]
            old_ids = {c for c in candidates if c is not None and c != remote.id}
            # An old version a vector store may still be serving stays until the new one
            # is indexed; its attachment row refers to it (syncd.state.vector_ledger).
            old_ids -= serving_versions(conn, old_ids)
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
        """The remote file is gone: close the intent; drop the row if it still names it,
        and the candidate it was, if any."""
        with self._write() as conn:
            intent = _intent_by_id(conn, intent_id)
            _finish_intent(conn, intent_id, IntentState.DONE, now, "deleted")
            conn.execute(
                "DELETE FROM files WHERE path = ? AND file_id = ?", (intent.path, intent.file_id)
            )
            conn.execute("DELETE FROM candidates WHERE file_id = ?", (intent.file_id,))

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

    # -- candidates: possibly syncd's, kept --------------------------------------------

    def record_candidates(self, rows: Sequence[CandidateRow]) -> None:
        """Remember files kept as possibly syncd's (a file already recorded keeps its row)."""
        if not rows:
            return
        with self._write() as conn:
            conn.executemany(
                f"INSERT OR IGNORE INTO candidates ({', '.join(_CANDIDATE_FIELDS)}) "  # noqa: S608
                f"VALUES ({', '.join('?' * len(_CANDIDATE_FIELDS))})",
                [tuple(getattr(row, name) for name in _CANDIDATE_FIELDS) for row in rows],
            )

    def candidates(self, *, dismissed: bool = False) -> list[CandidateRow]:
        """The unresolved candidates (and the dismissed ones too with ``dismissed``)."""
        sql = "SELECT * FROM candidates"
        params: tuple[str, ...] = ()
        if not dismissed:
            sql += " WHERE state = ?"
            params = (CandidateState.UNRESOLVED,)
        try:
            rows = self._query(sql + " ORDER BY path, created_at, file_id", params)
        except sqlite3.OperationalError:  # a ledger of version 3 or older, read-only
            return []
        return [CandidateRow(**{name: r[name] for name in _CANDIDATE_FIELDS}) for r in rows]

    def dismiss_candidate(self, file_id: str) -> None:
        """The user says the file is not syncd's: keep it known (never matched again)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE candidates SET state = ? WHERE file_id = ?",
                (CandidateState.DISMISSED, file_id),
            )

    def forget_candidates(self, file_ids: Iterable[str]) -> None:
        """Forget candidates that are gone from the remote (or that another ledger of
        this host now records as its own)."""
        with self._write() as conn:
            conn.executemany("DELETE FROM candidates WHERE file_id = ?", [(i,) for i in file_ids])

    # -- other ledgers of this host ------------------------------------------------------

    def other_claims(self, *, since: float = 0.0) -> Claims:
        """What every other ledger of the registry records or may have uploaded (its
        uploads started at or after ``since``); unreadable ledgers are skipped."""
        claims = Claims()
        if self.registry is None:
            return claims
        me = self.path.resolve()
        for other in self.registry.ledgers():
            if other != me:
                claims.merge(read_claims(other, since=since))
        return claims

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
                (now, result, redact_text(summary), pass_id),
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
        failed with ``reason``), every upload in parts, the uploads closed as not stored
        (their late copies would be the old remote's) and the candidates kept there. The
        dirty queue and the passes stay. Returns how many remote copies were forgotten."""
        with self._write() as conn:
            copies = conn.execute(
                "SELECT count(*) FROM files WHERE file_id IS NOT NULL"
            ).fetchone()[0]
            conn.execute("DELETE FROM files")
            conn.execute(
                "UPDATE intents SET state = ?, finished_at = ?, outcome = ? WHERE state = ?",
                (IntentState.FAILED, now, reason, IntentState.OPEN),
            )
            conn.execute("UPDATE intents SET outcome = ? WHERE outcome = ?", (reason, NOT_STORED))
            conn.execute("DELETE FROM candidates")
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
            unresolved=len(self.candidates()),
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
    unresolved: int  # remote files possibly syncd's, kept (``candidates``)
    problem_rows: list[LedgerRow]
    last_pass: dict[str, Any] | None

    @property
    def pending(self) -> int:
        return self.retrying + self.queued + self.open_intents


_new_object = object.__new__
_set_attribute = object.__setattr__


def _row_of(values: tuple[Any, ...]) -> LedgerRow:
    """A ``LedgerRow`` from a ``_ROWS_SQL`` tuple, without the frozen ``__init__``: that
    sets each of the 19 fields through ``object.__setattr__`` and costs twice as much,
    which counts when a pass reads 100,000 rows. The row is the same (its ``__dict__``
    holds every field, as ``__init__`` leaves it)."""
    row = _new_object(LedgerRow)
    _set_attribute(row, "__dict__", dict(zip(_ROW_FIELDS, values, strict=True)))
    return row


def _row(data: Any) -> LedgerRow:
    return LedgerRow(**{name: data[name] for name in _ROW_FIELDS})


def _intent(data: dict[str, Any]) -> Intent:
    # .get: a ledger of version 3 or older read without migrating lacks the newer columns
    values: dict[str, Any] = {name: data.get(name) for name in _INTENT_FIELDS}
    values["kind"] = IntentKind(values["kind"])
    values["state"] = IntentState(values["state"])
    return Intent(**values)


def read_claims(path: Path, *, since: float = 0.0) -> Claims:
    """What the ledger at ``path`` records (read-only, without its lock; any schema
    version): its file ids, its kept candidates, and its upload intents started at or
    after ``since`` whose outcome is open or that adopted nothing. A ledger that cannot
    be read yields nothing (said at debug level)."""
    claims = Claims()
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        log.debug("other_ledger_unreadable", ledger=str(path), error=str(exc))
        return claims
    try:
        conn.row_factory = sqlite3.Row
        claims.file_ids = _ids(conn, "SELECT file_id FROM files WHERE file_id IS NOT NULL")
        claims.file_ids |= _ids(conn, "SELECT file_id FROM intents WHERE file_id IS NOT NULL")
        claims.doubtful = _ids(conn, "SELECT file_id FROM candidates")
        found = conn.execute("SELECT value FROM meta WHERE key = ?", (META_HEARTBEAT,))
        beat = found.fetchone()
        heartbeat = float(beat[0]) if beat else None
        rows = conn.execute(
            """SELECT * FROM intents WHERE kind = ? AND started_at >= ?
               AND (state = ? OR outcome = ?)""",
            (IntentKind.UPLOAD, since, IntentState.OPEN, NOT_STORED),
        ).fetchall()
        for row in rows:
            data = dict(row)
            is_open = data["state"] == IntentState.OPEN
            gave_up = data.get("gave_up_at")
            alive = data.get("alive_at")
            if gave_up is None and alive is None:
                # Open and unsealed: its process may be sending it right now.
                alive = heartbeat if is_open else data.get("finished_at")
            claims.uploads.append(
                ForeignUpload(
                    ledger=path,
                    filename=str(data.get("filename") or data["path"]),
                    size=int(data.get("size") or 0),
                    started_at=float(data["started_at"]),
                    gave_up_at=gave_up,
                    alive_at=alive,
                    time_limit=data.get("time_limit"),
                )
            )
    except sqlite3.Error as exc:
        log.debug("other_ledger_unreadable", ledger=str(path), error=str(exc))
    finally:
        conn.close()
    return claims


def _ids(conn: sqlite3.Connection, sql: str) -> set[str]:
    try:
        return {str(r[0]) for r in conn.execute(sql)}
    except sqlite3.OperationalError:  # an older ledger without that table
        return set()


def lock_ledger(ledger: Path) -> FileLock:
    """The lock beside ``ledger``; LedgerLockedError naming the holder if it is taken."""
    try:
        return FileLock(ledger.with_name(ledger.name + ".lock"))
    except LockHeldError as exc:
        raise LedgerLockedError(
            f"ledger {ledger.with_suffix('')} is in use by another syncd process "
            f"({exc.holder or 'pid unknown'}); stop it first or use another --state"
        ) from None
    except OSError as exc:
        lock = ledger.with_name(ledger.name + ".lock")
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                f"the ledger's lock {lock} is a symbolic link; refused (remove it)"
            ) from None
        raise ConfigError(f"cannot open the ledger's lock {lock}: {exc.strerror}") from None


def _refuse_link(path: Path, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(
            f"{path} is a symbolic link; syncd never opens its ledger through one "
            "(remove the link, or name the real file with --state)"
        )


def _create_or_check(path: Path) -> None:
    """Create the ledger file (0600, ``O_EXCL|O_NOFOLLOW``) or check the one there: a
    regular file, not a link; nor may SQLite's side files be links."""
    for side in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = side.lstat()
        except FileNotFoundError:
            continue
        _refuse_link(side, st)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{side} is not a regular file; it cannot be a ledger")
    try:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        os.close(os.open(path, flags, 0o600))
    except FileExistsError:
        pass  # checked above


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
        (state, now, redact_text(outcome), file_id, intent_id),
    )


def _insert_delete(conn: sqlite3.Connection, path: str, file_id: str, now: float) -> Intent:
    cursor = conn.execute(
        "INSERT INTO intents (kind, path, file_id, started_at) VALUES (?, ?, ?, ?)",
        (IntentKind.DELETE, path, file_id, now),
    )
    return _intent_by_id(conn, int(cursor.lastrowid or 0))
