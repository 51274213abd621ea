"""The ledger's vector store part: which store a mirror keeps, and each attachment's state.

Two tables of the mirror's ledger (declared in ``syncd.state.schema``), written in the
ledger's transactions on its connection:

- ``vector_stores``: one row per configured store (``key``: ``name:docs`` or
  ``id:vs_...``). A store syncd creates is an intent first (``creating``, with the nonce
  the create request puts in the store's metadata), then ``ready`` with its id; ``gone``
  once the API says it does not exist. ``status`` keeps the store as last retrieved
  (counts, usage, expiry) for ``syncd status``, which reads without the network.
- ``vector_attachments``: one row per (store, file): the path and content it holds, the
  attributes and chunking syncd gave it, and its state::

      pending -> attaching -> in_progress -> completed
                     |             |-> failed (indexing failed, or the deadline passed)
                     '-> (reconciled by listing the store)
      any attached state -> detaching -> (row gone | pending again)

  ``attaching`` and ``detaching`` are the write-ahead intents: committed before the
  request, settled by listing the store when their outcome is unknown.
  ``after_detach`` says what a detach is for: ``reattach`` (a retry: back to
  ``pending``), ``retire`` (an old version: the row goes and, in the same transaction,
  a delete intent for its File is opened unless something else still refers to it) or
  ``drop`` (the File is being deleted: the row just goes). ``foreign`` marks one of our
  files that someone else attached (no owner tag of ours): never touched.

An attachment row refers to its File: ``Ledger.known_file_ids`` counts it, and
``Ledger.complete_upload`` keeps a replaced version that a row shows may be serving
searches (``serving_versions``) instead of opening its delete intent.

The owner tag (``owner_id``): a random id made when the ledger first needs it, kept in
``meta``; every file syncd attaches carries it as the ``syncd_owner`` attribute.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncd.state.ledger import Intent, Ledger

META_OWNER = "vector_owner"


class AttachState(StrEnum):
    PENDING = "pending"  # to be attached (again), once its backoff allows
    ATTACHING = "attaching"  # intent: the attach request may have been sent
    IN_PROGRESS = "in_progress"  # attached; indexing until ``deadline``
    COMPLETED = "completed"
    FAILED = "failed"  # indexing failed or stalled; ``error_kind`` says if it is retried
    DETACHING = "detaching"  # intent: the detach request may have been sent
    FOREIGN = "foreign"  # attached by someone else: left alone


class AfterDetach(StrEnum):
    REATTACH = "reattach"
    RETIRE = "retire"
    DROP = "drop"


# States in which the store may be serving the file's content to searches.
SERVING = (AttachState.ATTACHING, AttachState.IN_PROGRESS, AttachState.COMPLETED)


@dataclass(frozen=True)
class Attachment:
    """One row of ``vector_attachments``."""

    store_id: str
    file_id: str
    path: str
    state: AttachState
    sha256: str | None = None
    attributes: str | None = None  # JSON, sorted keys: what was sent (or last seen)
    chunking: str | None = None  # JSON of the strategy sent; None: auto
    after_detach: str | None = None
    batch_id: str | None = None
    started_at: float | None = None
    deadline: float | None = None
    next_poll_at: float | None = None
    polls: int = 0
    usage_bytes: int | None = None
    last_error: str | None = None
    error_kind: str | None = None
    attempts: int = 0
    next_attempt_at: float | None = None
    updated_at: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.store_id, self.file_id

    def attribute_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.attributes)) if self.attributes else {}


@dataclass(frozen=True)
class StoreRow:
    """One row of ``vector_stores``."""

    key: str
    state: str  # creating | ready | gone
    store_id: str | None = None
    name: str | None = None
    created_by_syncd: int = 0
    nonces: str | None = None  # JSON list
    created_at: float | None = None
    checked_at: float | None = None
    status: str | None = None  # JSON of the store as last retrieved
    last_error: str | None = None

    def nonce_list(self) -> list[str]:
        return list(json.loads(self.nonces)) if self.nonces else []

    def status_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.status)) if self.status else {}


_ATTACHMENT_FIELDS = tuple(f.name for f in fields(Attachment))
_STORE_FIELDS = tuple(f.name for f in fields(StoreRow))


def dumps(value: Any) -> str:
    """JSON as the ledger keeps it (sorted keys, so equal sets compare equal as text)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def serving_versions(conn: sqlite3.Connection, file_ids: Collection[str]) -> set[str]:
    """Which of ``file_ids`` an attachment row shows may be serving searches."""
    if not file_ids:
        return set()
    marks = ", ".join("?" * len(file_ids))
    states = ", ".join("?" * len(SERVING))
    rows = conn.execute(
        f"SELECT file_id FROM vector_attachments WHERE file_id IN ({marks})"  # noqa: S608
        f" AND state IN ({states})",
        (*file_ids, *SERVING),
    )
    return {row[0] for row in rows}


class VectorLedger:
    """The vector tables of one ``Ledger`` (its lock, connection and transactions)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # -- the owner tag ---------------------------------------------------------------------

    def owner_id(self) -> str:
        """This ledger's owner tag, made (and kept) the first time it is asked for."""
        with self.ledger._write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_OWNER,)).fetchone()
            if row is not None:
                return str(row[0])
            owner = "syncd-" + secrets.token_hex(16)
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (META_OWNER, owner))
            return owner

    def known_owner(self) -> str | None:
        """The owner tag if the ledger has one (read-only callers never make one)."""
        return self.ledger.get_meta(META_OWNER)

    # -- stores ----------------------------------------------------------------------------

    def store(self, key: str) -> StoreRow | None:
        rows = self.ledger._query("SELECT * FROM vector_stores WHERE key = ?", (key,))
        return _store(rows[0]) if rows else None

    def stores(self) -> list[StoreRow]:
        return [_store(r) for r in self.ledger._query("SELECT * FROM vector_stores ORDER BY key")]

    def begin_store_create(self, key: str, name: str, nonce: str, *, now: float) -> None:
        """The intent to create a store, before the request (its nonce is remembered)."""
        with self.ledger._write() as conn:
            row = conn.execute("SELECT nonces FROM vector_stores WHERE key = ?", (key,)).fetchone()
            nonces = [*(json.loads(row[0]) if row and row[0] else []), nonce]
            conn.execute(
                "INSERT OR REPLACE INTO vector_stores (key, name, created_by_syncd, nonces,"
                " state, created_at) VALUES (?, ?, 1, ?, 'creating', ?)",
                (key, name, dumps(nonces), now),
            )

    def store_ready(
        self, key: str, store_id: str, name: str, *, created: bool, status: str, now: float
    ) -> None:
        with self.ledger._write() as conn:
            conn.execute(
                "INSERT INTO vector_stores (key, state) VALUES (?, 'ready')"
                " ON CONFLICT (key) DO NOTHING",
                (key,),
            )
            conn.execute(
                "UPDATE vector_stores SET store_id = ?, name = ?, state = 'ready',"
                " created_by_syncd = max(created_by_syncd, ?), checked_at = ?, status = ?,"
                " last_error = NULL WHERE key = ?",
                (store_id, name, int(created), now, status, key),
            )

    def store_checked(self, key: str, status: str, *, now: float) -> None:
        with self.ledger._write() as conn:
            conn.execute(
                "UPDATE vector_stores SET checked_at = ?, status = ?, last_error = NULL"
                " WHERE key = ?",
                (now, status, key),
            )

    def store_problem(self, key: str, problem: str, *, gone: bool, now: float) -> None:
        """The store could not be used; ``gone``: it does not exist any more."""
        with self.ledger._write() as conn:
            conn.execute(
                "INSERT INTO vector_stores (key, state) VALUES (?, 'ready')"
                " ON CONFLICT (key) DO NOTHING",
                (key,),
            )
            conn.execute(
                "UPDATE vector_stores SET last_error = ?, checked_at = ?,"
                " state = CASE WHEN ? THEN 'gone' ELSE state END WHERE key = ?",
                (problem, now, int(gone), key),
            )

    def forget_store_key(self, key: str) -> None:
        with self.ledger._write() as conn:
            conn.execute("DELETE FROM vector_stores WHERE key = ?", (key,))

    # -- attachments -----------------------------------------------------------------------

    def attachments(self, store_id: str | None = None) -> dict[tuple[str, str], Attachment]:
        """Every attachment (of one store), by (store id, file id)."""
        where, params = ("WHERE store_id = ?", (store_id,)) if store_id else ("", ())
        rows = self.ledger._query(f"SELECT * FROM vector_attachments {where}", params)  # noqa: S608
        found = [_attachment(r) for r in rows]
        return {a.key: a for a in found}

    def attachments_of(self, file_id: str) -> list[Attachment]:
        rows = self.ledger._query("SELECT * FROM vector_attachments WHERE file_id = ?", (file_id,))
        return [_attachment(r) for r in rows]

    def begin_attach(self, rows: Sequence[Attachment], *, now: float) -> None:
        """Commit the intent to attach these files (one transaction, before the request);
        a row that exists keeps its attempts."""
        with self.ledger._write() as conn:
            for row in rows:
                conn.execute(
                    "INSERT INTO vector_attachments (store_id, file_id, path, state, attempts,"
                    " polls) VALUES (?, ?, ?, 'attaching', 0, 0) ON CONFLICT DO NOTHING",
                    (row.store_id, row.file_id, row.path),
                )
                conn.execute(
                    "UPDATE vector_attachments SET path = ?, sha256 = ?, attributes = ?,"
                    " chunking = ?, state = 'attaching', after_detach = NULL, batch_id = NULL,"
                    " started_at = ?, deadline = NULL, next_poll_at = NULL, polls = 0,"
                    " usage_bytes = NULL, updated_at = ? WHERE store_id = ? AND file_id = ?",
                    (
                        row.path,
                        row.sha256,
                        row.attributes,
                        row.chunking,
                        now,
                        now,
                        row.store_id,
                        row.file_id,
                    ),
                )

    def update(self, store_id: str, file_id: str, **values: Any) -> None:
        """Set columns of one attachment (its state transitions, polls, errors)."""
        self.update_many([(store_id, file_id, values)])

    def update_many(self, changes: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        """Several attachments' changes in one transaction."""
        with self.ledger._write() as conn:
            for store_id, file_id, values in changes:
                if not values:
                    continue
                unknown = set(values) - set(_ATTACHMENT_FIELDS)
                if unknown:
                    raise ValueError(f"no attachment column {sorted(unknown)}")
                sets = ", ".join(f"{name} = ?" for name in values)
                conn.execute(
                    f"UPDATE vector_attachments SET {sets} WHERE store_id = ? AND file_id = ?",  # noqa: S608
                    (*values.values(), store_id, file_id),
                )

    def adopt(self, row: Attachment) -> None:
        """Record an attachment found in the store (ours by its owner tag, or foreign)."""
        with self.ledger._write() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO vector_attachments ({', '.join(_ATTACHMENT_FIELDS)})"  # noqa: S608
                f" VALUES ({', '.join('?' * len(_ATTACHMENT_FIELDS))})",
                tuple(getattr(row, name) for name in _ATTACHMENT_FIELDS),
            )

    def begin_detach(self, store_id: str, file_id: str, after: AfterDetach, *, now: float) -> None:
        """Commit the intent to detach, before the request."""
        self.update(
            store_id, file_id, state=AttachState.DETACHING, after_detach=after, updated_at=now
        )

    def finish_detach(self, row: Attachment, *, now: float) -> Intent | None:
        """The file is out of the store. One transaction: the row goes (or is pending
        again, for a retry); for a retired version, the delete intent of its File when
        nothing else refers to it. Returns that intent."""
        from syncd.state.ledger import _insert_delete  # the ledger's own intent row

        with self.ledger._write() as conn:
            if row.after_detach == AfterDetach.REATTACH:
                conn.execute(
                    "UPDATE vector_attachments SET state = 'pending', after_detach = NULL,"
                    " batch_id = NULL, deadline = NULL, next_poll_at = NULL, updated_at = ?"
                    " WHERE store_id = ? AND file_id = ?",
                    (now, row.store_id, row.file_id),
                )
                return None
            conn.execute(
                "DELETE FROM vector_attachments WHERE store_id = ? AND file_id = ?",
                (row.store_id, row.file_id),
            )
            if row.after_detach != AfterDetach.RETIRE or _referenced(conn, row.file_id):
                return None
            return _insert_delete(conn, row.path, row.file_id, now)

    def drop(self, store_id: str, file_id: str) -> None:
        with self.ledger._write() as conn:
            conn.execute(
                "DELETE FROM vector_attachments WHERE store_id = ? AND file_id = ?",
                (store_id, file_id),
            )

    def forget_store(self, store_id: str) -> None:
        """Drop every attachment row of a store (it is gone, or no longer configured)."""
        with self.ledger._write() as conn:
            conn.execute("DELETE FROM vector_attachments WHERE store_id = ?", (store_id,))

    # -- for syncd status ------------------------------------------------------------------

    def current_counts(self, store_id: str) -> dict[str, int]:
        """Attachments of the files the ledger tracks now, by state."""
        rows = self.ledger._query(
            "SELECT a.state, count(*) AS n FROM vector_attachments a JOIN files f"
            " ON f.path = a.path AND f.file_id = a.file_id WHERE a.store_id = ?"
            " GROUP BY a.state",
            (store_id,),
        )
        return {str(r["state"]): int(r["n"]) for r in rows}

    def problems(self, store_id: str) -> list[Attachment]:
        """Failed (and foreign) attachments of current files, by path."""
        rows = self.ledger._query(
            "SELECT a.* FROM vector_attachments a JOIN files f ON f.path = a.path"
            " AND f.file_id = a.file_id WHERE a.store_id = ?"
            " AND (a.state IN ('failed', 'foreign') OR a.last_error IS NOT NULL)"
            " ORDER BY a.path",
            (store_id,),
        )
        return [_attachment(r) for r in rows]

    def retained_versions(self) -> int:
        """Attachment rows of old versions (their File stays until the new one is indexed)."""
        rows = self.ledger._query(
            "SELECT count(*) AS n FROM vector_attachments a WHERE NOT EXISTS"
            " (SELECT 1 FROM files f WHERE f.file_id = a.file_id)"
        )
        return int(rows[0]["n"])


def _referenced(conn: sqlite3.Connection, file_id: str) -> bool:
    """Whether a tracked row, an open intent or another attachment still names the file."""
    for sql in (
        "SELECT 1 FROM files WHERE file_id = ?",
        "SELECT 1 FROM intents WHERE file_id = ? AND state = 'open'",
        "SELECT 1 FROM vector_attachments WHERE file_id = ?",
    ):
        if conn.execute(sql, (file_id,)).fetchone():
            return True
    return False


def _attachment(data: Any) -> Attachment:
    values = {name: data[name] for name in _ATTACHMENT_FIELDS}
    values["state"] = AttachState(values["state"])
    return Attachment(**values)


def _store(data: Any) -> StoreRow:
    return StoreRow(**{name: data[name] for name in _STORE_FIELDS})
