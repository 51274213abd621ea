"""The ledger's schema, declared once: ``TABLES``. sqlite-utils creates and migrates it.

``ensure_schema`` brings any ledger to ``SCHEMA_VERSION``: it creates the tables a file
lacks, adds the columns and indexes it lacks, then runs the ``TRANSFORMS`` of the
versions in between (changes SQLite's ``ALTER TABLE`` cannot make: a column's type, a
constraint; sqlite-utils' ``transform`` rebuilds the table for those). A new column or
table is one line in ``TABLES`` and a version bump; a change of an existing column is a
``TRANSFORMS`` entry.

sqlite-utils wraps the ledger's own connection, inside the ledger's ``BEGIN IMMEDIATE``
transaction: its writes nest as savepoints, so the whole migration commits together or
not at all. It is imported only when a file needs creating or migrating (its import
costs about 0.17 s, which an up-to-date ledger, the common case, never pays).

Versions: 1 the first schema; 2 resumable uploads (``multipart_*``); 3 this declared
form (no change of tables, and ``meta`` is declared like the others); 4 vector stores
(``vector_stores``, ``vector_attachments``: ``syncd.state.vector_ledger``); 5 what proves
ownership after a lost answer or a crash: an upload intent's end (``gave_up_at``, or
``alive_at``, the last sign of life of the process that sent it, sealed at the next
open) and its ``time_limit``; ``candidates``, remote files that may be syncd's but are
kept because that cannot be proven; 6 the operability tables (``refusals``,
``refused_deletes``, ``guard_deletes``, ``pending_deletes``: issue 17, all in the one
marked block of ``TABLES``; new tables only, so no transform).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlite_utils import Database

SCHEMA_VERSION = 6
META_SCHEMA_VERSION = "schema_version"


@dataclass(frozen=True)
class TableSpec:
    """One table: its columns (name -> Python type: str, int, float), primary key,
    NOT NULL columns, defaults and indexes."""

    columns: Mapping[str, type]
    pk: str | tuple[str, ...]
    not_null: frozenset[str] = frozenset()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    indexes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name -> columns


TABLES: dict[str, TableSpec] = {
    "meta": TableSpec({"key": str, "value": str}, pk="key"),
    # One row per path syncd tracks: the local fingerprint of the content the remote file
    # ``file_id`` holds, and the last failure (fingerprint of the content that failed).
    "files": TableSpec(
        {
            "path": str,
            "size": int,
            "mtime_ns": int,
            "inode": int,
            "sha256": str,
            "purpose": str,
            "file_id": str,
            "remote_bytes": int,
            "remote_filename": str,
            "uploaded_at": float,
            "expires_at": int,
            "last_error": str,
            "error_kind": str,
            "attempts": int,
            "next_attempt_at": float,
            "failed_sha256": str,
            "failed_size": int,
            "failed_mtime_ns": int,
            "failed_inode": int,
        },
        pk="path",
        not_null=frozenset({"attempts"}),
        defaults={"attempts": 0},
        indexes={"files_file_id": ("file_id",)},
    ),
    # Write-ahead records of uploads and deletes (``IntentKind``, ``IntentState``).
    "intents": TableSpec(
        {
            "id": int,
            "kind": str,
            "path": str,
            "state": str,
            "filename": str,
            "purpose": str,
            "expires_after": int,
            "sha256": str,
            "size": int,
            "mtime_ns": int,
            "inode": int,
            "replaces": str,
            "file_id": str,
            "started_at": float,
            "finished_at": float,
            "outcome": str,
            # An upload's window (``syncd.sync.ownership``): when the client gave up on
            # it (an ambiguous end), or the process's last sign of life (a crash), and
            # how long after that the request could still have been received.
            "gave_up_at": float,
            "alive_at": float,
            "time_limit": float,
        },
        pk="id",
        not_null=frozenset({"kind", "path", "state", "started_at"}),
        defaults={"state": "open"},
        indexes={"intents_state": ("state",)},
    ),
    # The daemon's durable queue of paths to look at again.
    "dirty": TableSpec(
        {"path": str, "queued_at": float}, pk="path", not_null=frozenset({"queued_at"})
    ),
    "passes": TableSpec(
        {"id": int, "started_at": float, "finished_at": float, "result": str, "summary": str},
        pk="id",
        not_null=frozenset({"started_at"}),
    ),
    # Large files being sent through the Uploads API, and the parts the server confirmed.
    "multipart_uploads": TableSpec(
        {
            "upload_id": str,
            "path": str,
            "sha256": str,
            "size": int,
            "purpose": str,
            "filename": str,
            "expires_after": int,
            "part_size": int,
            "md5": str,
            "created_at": float,
            "expires_at": float,
        },
        pk="upload_id",
        not_null=frozenset(
            {"path", "sha256", "size", "purpose", "filename", "part_size", "created_at"}
            | {"expires_at"}
        ),
        indexes={"multipart_uploads_path": ("path",)},
    ),
    # Remote files that may be syncd's (in the window of an upload of ours whose answer
    # was lost) but are kept, because another writer may have made them: never adopted,
    # never deleted unless the user asks (``syncd candidates --delete``). ``dismissed``:
    # the user said it is not syncd's.
    "candidates": TableSpec(
        {
            "file_id": str,
            "path": str,
            "filename": str,
            "bytes": int,
            "created_at": int,
            "purpose": str,
            "reason": str,
            "found_at": float,
            "state": str,
        },
        pk="file_id",
        not_null=frozenset({"path", "found_at", "state"}),
        defaults={"state": "unresolved"},
    ),
    "multipart_parts": TableSpec(
        {"upload_id": str, "part_index": int, "part_id": str, "bytes": int},
        pk=("upload_id", "part_index"),
        not_null=frozenset({"part_id", "bytes"}),
    ),
    # The vector store a mirror keeps (one row per configured store) and each attachment
    # of one of its files to one store, with its state (syncd.state.vector_ledger).
    "vector_stores": TableSpec(
        {
            "key": str,
            "store_id": str,
            "name": str,
            "created_by_syncd": int,
            "nonces": str,
            "state": str,
            "created_at": float,
            "checked_at": float,
            "status": str,
            "last_error": str,
        },
        pk="key",
        not_null=frozenset({"state"}),
    ),
    "vector_attachments": TableSpec(
        {
            "store_id": str,
            "file_id": str,
            "path": str,
            "sha256": str,
            "attributes": str,
            "chunking": str,
            "state": str,
            "after_detach": str,
            "batch_id": str,
            "started_at": float,
            "deadline": float,
            "next_poll_at": float,
            "polls": int,
            "usage_bytes": int,
            "last_error": str,
            "error_kind": str,
            "attempts": int,
            "next_attempt_at": float,
            "updated_at": float,
        },
        pk=("store_id", "file_id"),
        not_null=frozenset({"path", "state", "attempts", "polls"}),
        defaults={"attempts": 0, "polls": 0},
        indexes={
            "vector_attachments_file": ("file_id",),
            "vector_attachments_path": ("path",),
        },
    ),
    # --- operability (issue 17), schema version 6: new tables only -------------------
    # A pass the mass-delete guard held back, and the deletes it refused (one row each:
    # an approval applies to exactly these copies). state: open, approved, applied,
    # cleared (nothing left to approve) or superseded (a later refusal replaced it).
    "refusals": TableSpec(
        {
            "id": int,
            "at": float,
            "deletes": int,
            "tracked": int,
            "message": str,
            "state": str,
            "approved_at": float,
            "approved_by": str,
            "approved_max": int,
            "finished_at": float,
        },
        pk="id",
        not_null=frozenset({"at", "deletes", "state"}),
        indexes={"refusals_state": ("state",)},
    ),
    "refused_deletes": TableSpec(
        {"refusal_id": int, "path": str, "file_id": str},
        pk=("refusal_id", "path"),
        not_null=frozenset({"file_id"}),
    ),
    # What the guard counts over its window (daemon): deletes of locally deleted files
    # (kind "delete"), and new files uploaded by partial passes (kind "new"): a delete
    # of such a file within the window is churn, not a mass delete.
    "guard_deletes": TableSpec(
        {"id": int, "path": str, "at": float, "kind": str},
        pk="id",
        not_null=frozenset({"path", "at", "kind"}),
        indexes={"guard_deletes_at": ("at",), "guard_deletes_path": ("path",)},
    ),
    # delete_delay: remote copies of locally deleted files, deleted once due.
    "pending_deletes": TableSpec(
        {"path": str, "file_id": str, "since": float, "due_at": float},
        pk="path",
        not_null=frozenset({"file_id", "since", "due_at"}),
    ),
    # --- end of operability (issue 17) -------------------------------------------------
}

# version -> the change that brings a ledger of the previous version to it, for what
# creating tables and adding columns cannot do. None so far.
TRANSFORMS: dict[int, Callable[[Database], None]] = {}


def schema_version(conn: sqlite3.Connection) -> int:
    """The version a ledger file was written with (0: a new, empty file)."""
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone():
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_SCHEMA_VERSION,)).fetchone()
    return int(row[0]) if row else 0


def ensure_schema(conn: sqlite3.Connection, version: int) -> None:
    """Bring a ledger at ``version`` to ``SCHEMA_VERSION``. Call inside a write
    transaction on ``conn``; it does not commit."""
    from sqlite_utils import Database  # see the module docstring: only when needed

    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    for name, spec in TABLES.items():
        table = db.table(name)
        if not table.exists():
            table.create(
                dict(spec.columns),
                pk=spec.pk,
                not_null=set(spec.not_null),
                defaults=dict(spec.defaults),
            )
        else:
            have = table.columns_dict
            for column, kind in spec.columns.items():
                if column not in have:
                    table.add_column(column, kind, not_null_default=spec.defaults.get(column))
        for index_name, columns in spec.indexes.items():
            table.create_index(list(columns), index_name=index_name, if_not_exists=True)
    for number in range(version + 1, SCHEMA_VERSION + 1):
        transform = TRANSFORMS.get(number)
        if transform is not None:
            transform(db)
    db.table("meta").upsert({"key": META_SCHEMA_VERSION, "value": str(SCHEMA_VERSION)}, pk="key")
