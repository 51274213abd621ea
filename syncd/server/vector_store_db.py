"""Vector stores on disk for `syncd serve`: stores, their files, file batches.

Rows live in the store's ``files.db`` beside the files (same lock, same transactions as
``FileStore``): ``vector_stores``, ``vector_store_files`` (one row per attachment, the
file's id is the attachment's id, so a store holds a file at most once),
``vector_store_batches`` and ``vector_store_batch_files`` (which attachments a batch
made or named).

Indexing is simulated without a background task: when a file is attached the
``Indexer`` decides when its indexing ends (``ready_at``: the delay after a free worker
takes it, ``--index-delay`` seconds on ``--index-workers`` workers; NULL: it stalls
for ever) and how (``outcome``: ``completed`` or a ``last_error.code``). A file's status
is computed when read: ``cancelled`` once its batch was cancelled before it was ready,
else ``in_progress`` until ``ready_at``, then its outcome. A restart keeps every
decision (they are rows).

How the outcome is decided, in order: a file type file search does not read fails
``unsupported_file``; a text file (not .pdf/.doc/.docx/.pptx) that is neither UTF-8 nor
UTF-16 fails ``invalid_file``; then the fault injection's ``indexing`` part (see
``syncd.server.faults``) may make it fail (``failure_code``) or stall.

Detached files and deleted stores keep their row (``detached_at``/``deleted_at``) so
that a list cursor naming one still finds its place; re-attaching a detached file
makes a new row.
"""

from __future__ import annotations

import codecs
import heapq
import json
import random
import threading
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from syncd.server.faults import IndexingFaults
from syncd.server.store import FileRecord, FileStore, new_id
from syncd.vector_api import (
    AUTO_CHUNK_OVERLAP,
    AUTO_CHUNK_TOKENS,
    BINARY_DOCUMENT_EXTENSIONS,
    FILE_SEARCH_EXTENSIONS,
    FileCounts,
    file_search_extension,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vector_stores (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,
    expires_days   INTEGER,
    metadata       TEXT,
    deleted_at     INTEGER
);
CREATE INDEX IF NOT EXISTS vector_stores_order ON vector_stores (created_at, seq);
CREATE TABLE IF NOT EXISTS vector_store_files (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id      TEXT NOT NULL,
    file_id       TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    attributes    TEXT,
    chunk_max     INTEGER NOT NULL,
    chunk_overlap INTEGER NOT NULL,
    chunk_auto    INTEGER NOT NULL,
    ready_at      REAL,
    outcome       TEXT NOT NULL,
    error_message TEXT,
    cancelled_at  REAL,
    detached_at   INTEGER,
    UNIQUE (store_id, file_id)
);
CREATE INDEX IF NOT EXISTS vector_store_files_order
    ON vector_store_files (store_id, created_at, seq);
CREATE INDEX IF NOT EXISTS vector_store_files_file ON vector_store_files (file_id);
CREATE TABLE IF NOT EXISTS vector_store_batches (
    id         TEXT PRIMARY KEY,
    store_id   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    cancelled  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS vector_store_batch_files (
    batch_id TEXT NOT NULL,
    file_seq INTEGER NOT NULL,
    PRIMARY KEY (batch_id, file_seq)
);
"""

# A file's status at time ``?`` (module docstring); used in SELECT and WHERE alike.
_STATUS = (
    "(CASE WHEN f.cancelled_at IS NOT NULL THEN 'cancelled'"
    " WHEN f.ready_at IS NOT NULL AND f.ready_at <= ?"
    " THEN (CASE WHEN f.outcome = 'completed' THEN 'completed' ELSE 'failed' END)"
    " ELSE 'in_progress' END)"
)
_FILE_COLUMNS = (
    "f.seq, f.store_id, f.file_id, f.created_at, f.bytes, f.attributes, f.chunk_max,"
    " f.chunk_overlap, f.outcome, f.error_message"
)
ERROR_MESSAGES = {
    "unsupported_file": "The file type is not supported by file search.",
    "invalid_file": "The file could not be parsed: its text is neither UTF-8 nor UTF-16.",
    "server_error": "The server had an error while indexing the file.",
}
DEFAULT_INDEX_DELAY = 1.0
DEFAULT_INDEX_WORKERS = 16
_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoreRecord:
    """One vector store and its counts at the time it was read."""

    seq: int
    id: str
    name: str
    created_at: int
    last_active_at: int
    expires_days: int | None
    metadata: dict[str, str] | None
    counts: FileCounts
    usage_bytes: int

    def expires_at(self) -> int | None:
        if self.expires_days is None:
            return None
        return self.last_active_at + self.expires_days * 86400

    def status(self, now: float) -> str:
        expires = self.expires_at()
        if expires is not None and now >= expires:
            return "expired"
        return "in_progress" if self.counts.in_progress else "completed"

    def to_json(self, now: float) -> dict[str, Any]:
        """The ``VectorStoreObject``."""
        data: dict[str, Any] = {
            "id": self.id,
            "object": "vector_store",
            "created_at": self.created_at,
            "name": self.name,
            "usage_bytes": self.usage_bytes,
            "file_counts": self.counts.to_json(),
            "status": self.status(now),
            "expires_at": self.expires_at(),
            "last_active_at": self.last_active_at,
            "metadata": self.metadata,
        }
        if self.expires_days is not None:
            data["expires_after"] = {"anchor": "last_active_at", "days": self.expires_days}
        return data


@dataclass(frozen=True)
class StoreFileRecord:
    """One attachment, with its status at the time it was read."""

    seq: int
    store_id: str
    file_id: str
    created_at: int
    bytes: int
    attributes: dict[str, Any] | None
    chunk_max: int
    chunk_overlap: int
    outcome: str
    error_message: str | None
    status: str

    def to_json(self) -> dict[str, Any]:
        """The ``VectorStoreFileObject``."""
        failed = self.status == "failed"
        return {
            "id": self.file_id,
            "object": "vector_store.file",
            "usage_bytes": self.bytes if self.status == "completed" else 0,
            "created_at": self.created_at,
            "vector_store_id": self.store_id,
            "status": self.status,
            "last_error": {"code": self.outcome, "message": self.error_message or ""}
            if failed
            else None,
            "chunking_strategy": {
                "type": "static",
                "static": {
                    "max_chunk_size_tokens": self.chunk_max,
                    "chunk_overlap_tokens": self.chunk_overlap,
                },
            },
            "attributes": self.attributes if self.attributes is not None else {},
        }


@dataclass(frozen=True)
class BatchRecord:
    id: str
    store_id: str
    created_at: int
    cancelled: bool
    counts: FileCounts

    @property
    def status(self) -> str:
        if self.counts.in_progress:
            return "in_progress"
        if self.cancelled:
            return "cancelled"
        if self.counts.total and self.counts.failed == self.counts.total:
            return "failed"
        return "completed"

    def to_json(self) -> dict[str, Any]:
        """The ``VectorStoreFileBatchObject``."""
        return {
            "id": self.id,
            "object": "vector_store.files_batch",
            "created_at": self.created_at,
            "vector_store_id": self.store_id,
            "status": self.status,
            "file_counts": self.counts.to_json(),
        }


@dataclass(frozen=True)
class AttachSpec:
    """One file to attach, as validated from a request."""

    file: FileRecord
    attributes: dict[str, Any] | None
    chunking: tuple[int, int] | None  # (max tokens, overlap); None: auto


class Indexer:
    """Decides when and how each attached file's indexing ends (module docstring)."""

    def __init__(
        self,
        files: FileStore,
        *,
        delay: float = DEFAULT_INDEX_DELAY,
        workers: int = DEFAULT_INDEX_WORKERS,
    ) -> None:
        self.files = files
        self.delay = delay
        self.workers = max(1, workers)
        self._free: list[float] = [0.0] * self.workers
        self._lock = threading.Lock()
        self._rng = random.Random()  # noqa: S311 - test faults, not crypto
        self._faults: IndexingFaults | None = None

    def _draw(self, faults: IndexingFaults) -> random.Random:
        if faults is not self._faults:  # a new fault configuration restarts its stream
            self._faults = faults
            self._rng = random.Random(faults.seed)  # noqa: S311
        return self._rng

    def decide(
        self, file: FileRecord, faults: IndexingFaults, now: float
    ) -> tuple[float | None, str]:
        """(ready_at or None for a stall, outcome) for one file attached at ``now``."""
        outcome = self._content_outcome(file)
        with self._lock:
            rng = self._draw(faults)
            if outcome == "completed":
                if _named(file.filename, faults.fail_names) or (
                    faults.failure_rate and rng.random() < faults.failure_rate
                ):
                    outcome = faults.failure_code
                elif _named(file.filename, faults.stall_names) or (
                    faults.stall_rate and rng.random() < faults.stall_rate
                ):
                    return None, "completed"
            start = max(now, heapq.heappop(self._free))
            ready = start + self.delay
            heapq.heappush(self._free, ready)
        return ready, outcome

    def _content_outcome(self, file: FileRecord) -> str:
        extension = file_search_extension(file.filename)
        if extension not in FILE_SEARCH_EXTENSIONS:
            return "unsupported_file"
        if extension in BINARY_DOCUMENT_EXTENSIONS:
            return "completed"
        return "completed" if _is_text(self.files, file.id) else "invalid_file"


def _named(filename: str, globs: tuple[str, ...]) -> bool:
    base = filename.rsplit("/", 1)[-1]
    return any(fnmatchcase(filename, g) or fnmatchcase(base, g) for g in globs)


def _is_text(files: FileStore, file_id: str) -> bool:
    """Whether a stored file decodes as UTF-8, or as UTF-16 after a byte-order mark."""
    try:
        handle = open(files.blobs / file_id, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with handle:
        first = handle.read(_READ_CHUNK)
        encoding = "utf-16" if first[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8"
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            chunk = first
            while chunk:
                decoder.decode(chunk)
                chunk = handle.read(_READ_CHUNK)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


class VectorStoreDB:
    """Stores, attachments and batches in ``files.db`` (module docstring). Every method
    may block on disk: call them from a worker thread."""

    def __init__(self, files: FileStore, indexer: Indexer | None = None) -> None:
        self.files = files
        self.indexer = indexer or Indexer(files)
        files.ensure_schema(_SCHEMA)

    # -- stores --------------------------------------------------------------------------

    def create_store(
        self, *, name: str, metadata: dict[str, str] | None, expires_days: int | None
    ) -> StoreRecord:
        now = int(time.time())
        store_id = new_id("vs_")
        with self.files.transaction() as db:
            db.execute(
                "INSERT INTO vector_stores (id, name, created_at, last_active_at, expires_days,"
                " metadata) VALUES (?, ?, ?, ?, ?, ?)",
                (store_id, name, now, now, expires_days, _dumps(metadata)),
            )
        record = self.store(store_id)
        assert record is not None
        return record

    def store(self, store_id: str) -> StoreRecord | None:
        """The live store with this id (deleted ones are gone), with its counts."""
        rows = self.files.query(
            "SELECT seq, id, name, created_at, last_active_at, expires_days, metadata"
            " FROM vector_stores WHERE id = ? AND deleted_at IS NULL",
            (store_id,),
        )
        return self._store_record(rows[0]) if rows else None

    def _store_record(self, row: tuple[Any, ...]) -> StoreRecord:
        counts, usage = self._counts("f.store_id = ?", (row[1],))
        return StoreRecord(
            seq=row[0],
            id=row[1],
            name=row[2],
            created_at=row[3],
            last_active_at=row[4],
            expires_days=row[5],
            metadata=json.loads(row[6]) if row[6] is not None else None,
            counts=counts,
            usage_bytes=usage,
        )

    def _counts(
        self, where: str, params: tuple[Any, ...], join: str = ""
    ) -> tuple[FileCounts, int]:
        now = time.time()
        rows = self.files.query(
            f"SELECT {_STATUS} AS status, count(*), sum(f.bytes) FROM vector_store_files f"  # noqa: S608
            f" {join} WHERE {where} AND f.detached_at IS NULL GROUP BY status",
            (now, *params),
        )
        found = {row[0]: (int(row[1]), int(row[2] or 0)) for row in rows}
        counts = {status: found.get(status, (0, 0))[0] for status in found}
        total = sum(n for n, _ in found.values())
        usage = found.get("completed", (0, 0))[1]
        return FileCounts(**counts, total=total), usage

    def list_stores(
        self, *, order: str, after: str | None, before: str | None, limit: int
    ) -> tuple[list[StoreRecord], bool] | None:
        """One page of live stores; None when a cursor names no store ever made."""
        page = self._page(
            "SELECT seq, id, name, created_at, last_active_at, expires_days, metadata"
            " FROM vector_stores f WHERE f.deleted_at IS NULL",
            (),
            cursor_sql="SELECT created_at, seq FROM vector_stores WHERE id = ?",
            order=order,
            after=after,
            before=before,
            limit=limit,
        )
        if page is None:
            return None
        rows, more = page
        return [self._store_record(row) for row in rows], more

    def delete_store(self, store_id: str) -> bool:
        with self.files.transaction() as db:
            cursor = db.execute(
                "UPDATE vector_stores SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                (int(time.time()), store_id),
            )
            if cursor.rowcount == 0:
                return False
            db.execute(
                "UPDATE vector_store_files SET detached_at = ? WHERE store_id = ?"
                " AND detached_at IS NULL",
                (int(time.time()), store_id),
            )
        return True

    def touch(self, store_id: str) -> None:
        """The store was used: its ``last_active_at`` (and so its expiry) moves on."""
        with self.files.transaction() as db:
            db.execute(
                "UPDATE vector_stores SET last_active_at = ? WHERE id = ?",
                (int(time.time()), store_id),
            )

    # -- attachments -----------------------------------------------------------------------

    def attach(
        self,
        store_id: str,
        specs: list[AttachSpec],
        faults: IndexingFaults,
        *,
        batch_id: str | None = None,
    ) -> list[StoreFileRecord]:
        """Attach files (one transaction); a file already attached keeps its attachment
        as it is. With ``batch_id`` the batch is created too and names every file."""
        now = time.time()
        decided = [(spec, *self.indexer.decide(spec.file, faults, now)) for spec in specs]
        seqs: list[int] = []
        with self.files.transaction() as db:
            if batch_id is not None:
                db.execute(
                    "INSERT INTO vector_store_batches (id, store_id, created_at) VALUES (?, ?, ?)",
                    (batch_id, store_id, int(now)),
                )
            for spec, ready_at, outcome in decided:
                row = db.execute(
                    "SELECT seq, detached_at FROM vector_store_files"
                    " WHERE store_id = ? AND file_id = ?",
                    (store_id, spec.file.id),
                ).fetchone()
                if row is not None and row[1] is None:
                    seqs.append(int(row[0]))
                else:
                    if row is not None:  # a tombstone: the file comes back as a new row
                        db.execute("DELETE FROM vector_store_files WHERE seq = ?", (row[0],))
                    seqs.append(self._insert(db, store_id, spec, ready_at, outcome, now))
                if batch_id is not None:
                    db.execute(
                        "INSERT OR IGNORE INTO vector_store_batch_files (batch_id, file_seq)"
                        " VALUES (?, ?)",
                        (batch_id, seqs[-1]),
                    )
            db.execute(
                "UPDATE vector_stores SET last_active_at = ? WHERE id = ?", (int(now), store_id)
            )
        return [r for seq in seqs if (r := self._file_by_seq(seq)) is not None]

    @staticmethod
    def _insert(
        db: Any, store_id: str, spec: AttachSpec, ready_at: float | None, outcome: str, now: float
    ) -> int:
        chunk_max, overlap = spec.chunking or (AUTO_CHUNK_TOKENS, AUTO_CHUNK_OVERLAP)
        cursor = db.execute(
            "INSERT INTO vector_store_files (store_id, file_id, created_at, bytes, attributes,"
            " chunk_max, chunk_overlap, chunk_auto, ready_at, outcome, error_message)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                store_id,
                spec.file.id,
                int(now),
                spec.file.bytes,
                _dumps(spec.attributes),
                chunk_max,
                overlap,
                int(spec.chunking is None),
                ready_at,
                outcome,
                ERROR_MESSAGES.get(outcome),
            ),
        )
        return int(cursor.lastrowid or 0)

    def _file_by_seq(self, seq: int) -> StoreFileRecord | None:
        rows = self.files.query(
            f"SELECT {_FILE_COLUMNS}, {_STATUS} FROM vector_store_files f WHERE f.seq = ?",  # noqa: S608
            (time.time(), seq),
        )
        return _file_record(rows[0]) if rows else None

    def store_file(self, store_id: str, file_id: str) -> StoreFileRecord | None:
        rows = self.files.query(
            f"SELECT {_FILE_COLUMNS}, {_STATUS} FROM vector_store_files f"  # noqa: S608
            " WHERE f.store_id = ? AND f.file_id = ? AND f.detached_at IS NULL",
            (time.time(), store_id, file_id),
        )
        return _file_record(rows[0]) if rows else None

    def list_files(
        self,
        store_id: str,
        *,
        order: str,
        after: str | None,
        before: str | None,
        limit: int,
        status: str | None,
        batch_id: str | None = None,
    ) -> tuple[list[StoreFileRecord], bool] | None:
        """One page of a store's (or a batch's) files; None for a cursor never seen."""
        now = time.time()
        sql = f"SELECT {_FILE_COLUMNS}, {_STATUS} FROM vector_store_files f"  # noqa: S608
        params: list[Any] = [now]
        if batch_id is not None:
            sql += " JOIN vector_store_batch_files b ON b.file_seq = f.seq AND b.batch_id = ?"
            params.append(batch_id)
        sql += " WHERE f.store_id = ? AND f.detached_at IS NULL"
        params.append(store_id)
        if status is not None:
            sql += f" AND {_STATUS} = ?"
            params += [now, status]
        page = self._page(
            sql,
            tuple(params),
            cursor_sql="SELECT created_at, seq FROM vector_store_files"
            " WHERE store_id = ? AND file_id = ?",
            cursor_params=(store_id,),
            order=order,
            after=after,
            before=before,
            limit=limit,
        )
        if page is None:
            return None
        rows, more = page
        return [_file_record(row) for row in rows], more

    def update_attributes(
        self, store_id: str, file_id: str, attributes: dict[str, Any] | None
    ) -> StoreFileRecord | None:
        with self.files.transaction() as db:
            cursor = db.execute(
                "UPDATE vector_store_files SET attributes = ? WHERE store_id = ? AND file_id = ?"
                " AND detached_at IS NULL",
                (_dumps(attributes), store_id, file_id),
            )
            if cursor.rowcount == 0:
                return None
            db.execute(
                "UPDATE vector_stores SET last_active_at = ? WHERE id = ?",
                (int(time.time()), store_id),
            )
        return self.store_file(store_id, file_id)

    def detach(self, store_id: str, file_id: str) -> bool:
        """Remove a file from one store (the File itself stays); False if it was not there."""
        with self.files.transaction() as db:
            cursor = db.execute(
                "UPDATE vector_store_files SET detached_at = ? WHERE store_id = ? AND file_id = ?"
                " AND detached_at IS NULL",
                (int(time.time()), store_id, file_id),
            )
            db.execute(
                "UPDATE vector_stores SET last_active_at = ? WHERE id = ?",
                (int(time.time()), store_id),
            )
            return cursor.rowcount > 0

    def file_deleted(self, file_id: str) -> None:
        """``DELETE /files/{id}`` removes the file from every vector store."""
        with self.files.transaction() as db:
            db.execute(
                "UPDATE vector_store_files SET detached_at = ? WHERE file_id = ?"
                " AND detached_at IS NULL",
                (int(time.time()), file_id),
            )

    # -- batches -------------------------------------------------------------------------

    def batch(self, store_id: str, batch_id: str) -> BatchRecord | None:
        rows = self.files.query(
            "SELECT id, store_id, created_at, cancelled FROM vector_store_batches"
            " WHERE id = ? AND store_id = ?",
            (batch_id, store_id),
        )
        if not rows:
            return None
        counts, _ = self._counts(
            "b.batch_id = ?",
            (batch_id,),
            join="JOIN vector_store_batch_files b ON b.file_seq = f.seq",
        )
        row = rows[0]
        return BatchRecord(row[0], row[1], row[2], bool(row[3]), counts)

    def cancel_batch(self, store_id: str, batch_id: str) -> BatchRecord | None:
        """Files of the batch still indexing become ``cancelled``; None if no such batch."""
        now = time.time()
        with self.files.transaction() as db:
            cursor = db.execute(
                "UPDATE vector_store_batches SET cancelled = 1 WHERE id = ? AND store_id = ?",
                (batch_id, store_id),
            )
            if cursor.rowcount == 0:
                return None
            db.execute(
                "UPDATE vector_store_files SET cancelled_at = ? WHERE cancelled_at IS NULL"
                " AND (ready_at IS NULL OR ready_at > ?) AND seq IN"
                " (SELECT file_seq FROM vector_store_batch_files WHERE batch_id = ?)",
                (now, now, batch_id),
            )
        return self.batch(store_id, batch_id)

    # -- paging ----------------------------------------------------------------------------

    def _page(
        self,
        sql: str,
        params: tuple[Any, ...],
        *,
        cursor_sql: str,
        cursor_params: tuple[Any, ...] = (),
        order: str,
        after: str | None,
        before: str | None,
        limit: int,
    ) -> tuple[list[tuple[Any, ...]], bool] | None:
        """Rows of ``sql`` in ``order`` by (created_at, seq), after/before a cursor."""
        clauses: list[str] = []
        extra: list[Any] = []
        for cursor_id, forward in ((after, True), (before, False)):
            if cursor_id is None:
                continue
            found = self.files.query(cursor_sql, (*cursor_params, cursor_id))
            if not found:
                return None
            newer = (order == "asc") == forward
            clauses.append(f"(f.created_at, f.seq) {'>' if newer else '<'} (?, ?)")
            extra += [found[0][0], found[0][1]]
        # `before` alone pages backwards: take the rows nearest the cursor, then turn them.
        backwards = before is not None and after is None
        direction = "DESC" if (order == "desc") != backwards else "ASC"
        where = "".join(f" AND {c}" for c in clauses)
        rows = self.files.query(
            f"{sql}{where} ORDER BY f.created_at {direction}, f.seq {direction} LIMIT ?",
            (*params, *extra, limit + 1),
        )
        page = rows[:limit]
        if backwards:
            page.reverse()
        return page, len(rows) > limit


def _file_record(row: tuple[Any, ...]) -> StoreFileRecord:
    return StoreFileRecord(
        seq=row[0],
        store_id=row[1],
        file_id=row[2],
        created_at=row[3],
        bytes=row[4],
        attributes=json.loads(row[5]) if row[5] is not None else None,
        chunk_max=row[6],
        chunk_overlap=row[7],
        outcome=row[8],
        error_message=row[9],
        status=row[10],
    )


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)
