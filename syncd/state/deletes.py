"""The ledger's record of deletes held back: refusals and their approvals, the guard's
window, and delayed deletes (``delete_delay``). Part of ``Ledger`` (a base class), so
the SQL stays in the ledger; the tables are the "operability" block of
``syncd.state.schema``.

- **Refusals.** When the mass-delete guard holds deletes back, ``record_refusal``
  stores the refusal and each refused copy (path, remote id). The same refusal seen by
  the next pass is the same row, not a new one. ``syncd approve-deletes`` (another
  process, while the daemon runs: ``open_beside_owner``) marks the open refusal
  approved; from then on exactly those copies (``approved_deletes``) pass the guard,
  and no later delete does. ``settle_refusals`` after each pass drops the copies that
  are gone (deleted, or the file came back) and closes a refusal with none left
  (``applied`` if it was approved, else ``cleared``).
- **The guard's window.** The daemon deletes in many small passes; so that a mass
  delete spread over them is refused too, every delete of a locally deleted file is
  noted (``note_guarded_changes``), and the guard counts those of its window
  (``guarded_deletes_since``), less the files a partial pass had uploaded as new within
  it (a file created and deleted again is churn, not a mass delete).
- **Delayed deletes.** With ``delete_delay``, a locally deleted file's remote copy
  becomes a pending delete with a due time (``defer_deletes``); the planner deletes it
  once due, or cancels it (``cancel_pending``) when the file is back.

Every method that writes is one transaction. A ledger written before these tables
existed reads as having none of them (``syncd status`` on a ledger not yet migrated).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from syncd.errors import NothingRefusedError, SyncdError
from syncd.state.schema import SCHEMA_VERSION, schema_version

GUARD_MEMORY_SECONDS = 86400.0  # noted deletes older than this are forgotten

Copy = tuple[str, str]  # (path, remote file id)


class RefusalState:
    OPEN = "open"
    APPROVED = "approved"
    APPLIED = "applied"
    CLEARED = "cleared"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Refusal:
    """One pass's refused deletes (``copies``) and, once approved, who approved them."""

    id: int
    at: float
    deletes: int
    tracked: int | None
    message: str | None
    state: str
    copies: tuple[Copy, ...] = ()
    approved_at: float | None = None
    approved_by: str | None = None
    approved_max: int | None = None
    finished_at: float | None = None


@dataclass(frozen=True)
class PendingDelete:
    """A remote copy whose local file was deleted, to be deleted at ``due_at``."""

    path: str
    file_id: str
    since: float
    due_at: float


class DeleteRecords:
    """The methods ``Ledger`` gains from this module (see the module docstring)."""

    path: Path
    _conn: sqlite3.Connection

    # Provided by Ledger.
    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    @classmethod
    def open_beside_owner(cls, path: Path) -> Self:
        """Open a ledger to record an approval while its owner (a daemon) holds it.

        Without the process lock: SQLite's own locking keeps the two writers apart, and
        this connection writes nothing but ``approve_refusal``. The ledger must be of
        this version (it is never migrated without the lock).
        """
        if not path.is_file():
            raise SyncdError(f"no ledger at {path}")
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=10000")
            version = schema_version(conn)
        except sqlite3.DatabaseError as exc:
            raise SyncdError(f"ledger {path} is unreadable: {exc}") from None
        if version != SCHEMA_VERSION:
            conn.close()
            newer = "a newer" if version > SCHEMA_VERSION else "an older"
            raise SyncdError(
                f"ledger {path} was written by {newer} syncd; run this syncd's `sync` or "
                "`run` on it first"
            )
        return cls(conn, path, None)  # type: ignore[call-arg]

    def has_table(self, name: str) -> bool:
        rows = self._query(
            "SELECT 1 AS x FROM sqlite_master WHERE type='table' AND name=?", (name,)
        )
        return bool(rows)

    # -- refusals --------------------------------------------------------------------

    def record_refusal(
        self, message: str, copies: Sequence[Copy], *, tracked: int, now: float
    ) -> int:
        """The guard refused ``copies``: the open refusal if it holds the same copies,
        else a new one (superseding the open one). Returns its id."""
        wanted = sorted(set(copies))
        with self._write() as conn:
            row = conn.execute(
                "SELECT id FROM refusals WHERE state = ? ORDER BY id DESC LIMIT 1",
                (RefusalState.OPEN,),
            ).fetchone()
            if row is not None:
                held = conn.execute(
                    "SELECT path, file_id FROM refused_deletes WHERE refusal_id = ? "
                    "ORDER BY path, file_id",
                    (row[0],),
                ).fetchall()
                if [tuple(h) for h in held] == wanted:
                    conn.execute("UPDATE refusals SET message = ? WHERE id = ?", (message, row[0]))
                    return int(row[0])
            conn.execute(
                "UPDATE refusals SET state = ?, finished_at = ? WHERE state = ?",
                (RefusalState.SUPERSEDED, now, RefusalState.OPEN),
            )
            cursor = conn.execute(
                "INSERT INTO refusals (at, deletes, tracked, message, state) "
                "VALUES (?, ?, ?, ?, ?)",
                (now, len(wanted), tracked, message, RefusalState.OPEN),
            )
            refusal_id = int(cursor.lastrowid or 0)
            conn.executemany(
                "INSERT INTO refused_deletes (refusal_id, path, file_id) VALUES (?, ?, ?)",
                [(refusal_id, path, file_id) for path, file_id in wanted],
            )
            return refusal_id

    def refusals(self, *states: str) -> list[Refusal]:
        """The refusals in ``states`` (all when none given), newest first, with copies."""
        if not self.has_table("refusals"):
            return []
        where = f"WHERE state IN ({', '.join('?' * len(states))})" if states else ""
        found = self._query(f"SELECT * FROM refusals {where} ORDER BY id DESC", states)  # noqa: S608
        out = []
        for row in found:
            copies = self._query(
                "SELECT path, file_id FROM refused_deletes WHERE refusal_id = ? ORDER BY path",
                (row["id"],),
            )
            out.append(Refusal(**row, copies=tuple((c["path"], c["file_id"]) for c in copies)))
        return out

    def pending_refusal(self) -> Refusal | None:
        """The refusal waiting for an approval (or approved, not yet carried out)."""
        found = self.refusals(RefusalState.OPEN, RefusalState.APPROVED)
        return found[0] if found else None

    def approve_refusal(self, *, by: str, max_deletes: int | None, now: float) -> Refusal:
        """Approve the open refusal's deletes (``syncd approve-deletes``). SyncdError if
        there is none, or it holds more than ``max_deletes``."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT id, deletes FROM refusals WHERE state = ? ORDER BY id DESC LIMIT 1",
                (RefusalState.OPEN,),
            ).fetchone()
            if row is None:
                raise NothingRefusedError("nothing is waiting for an approval")
            refusal_id, count = int(row[0]), int(row[1])
            if max_deletes is not None and count > max_deletes:
                raise SyncdError(
                    f"the refused pass would delete {count} files, more than --max "
                    f"{max_deletes}: nothing approved"
                )
            conn.execute(
                "UPDATE refusals SET state = ?, approved_at = ?, approved_by = ?, "
                "approved_max = ? WHERE id = ?",
                (RefusalState.APPROVED, now, by, max_deletes, refusal_id),
            )
        (refusal,) = [r for r in self.refusals(RefusalState.APPROVED) if r.id == refusal_id]
        return refusal

    def approved_deletes(self) -> frozenset[Copy]:
        """The copies of approved refusals: the only deletes that pass the guard unasked."""
        if not self.has_table("refused_deletes"):
            return frozenset()
        rows = self._query(
            "SELECT d.path, d.file_id FROM refused_deletes d JOIN refusals r "
            "ON r.id = d.refusal_id WHERE r.state = ?",
            (RefusalState.APPROVED,),
        )
        return frozenset((r["path"], r["file_id"]) for r in rows)

    def drop_refused(self, paths: Iterable[str]) -> None:
        """Forget refused copies of ``paths`` (a pass found those files back)."""
        with self._write() as conn:
            conn.executemany(
                "DELETE FROM refused_deletes WHERE path = ? AND refusal_id IN "
                "(SELECT id FROM refusals WHERE state = ?)",
                [(p, RefusalState.OPEN) for p in paths],
            )

    def settle_refusals(self, *, now: float, cleared: bool = False) -> list[Refusal]:
        """After a pass: drop refused copies that no longer exist as a tracked row (they
        were deleted, or the file changed or came back); close refusals with none left.
        ``cleared``: a full pass refused nothing, so an open refusal no longer stands.
        Returns the approved refusals that were carried out."""
        with self._write() as conn:
            conn.execute(
                "DELETE FROM refused_deletes WHERE NOT EXISTS (SELECT 1 FROM files f WHERE "
                "f.path = refused_deletes.path AND f.file_id = refused_deletes.file_id)"
            )
            if cleared:
                conn.execute(
                    "UPDATE refusals SET state = ?, finished_at = ? WHERE state = ?",
                    (RefusalState.CLEARED, now, RefusalState.OPEN),
                )
            empty = conn.execute(
                "SELECT id, state FROM refusals WHERE state IN (?, ?) AND NOT EXISTS "
                "(SELECT 1 FROM refused_deletes d WHERE d.refusal_id = refusals.id)",
                (RefusalState.OPEN, RefusalState.APPROVED),
            ).fetchall()
            applied = [int(i) for i, state in empty if state == RefusalState.APPROVED]
            for refusal_id, state in empty:
                done = (
                    RefusalState.APPLIED if state == RefusalState.APPROVED else RefusalState.CLEARED
                )
                conn.execute(
                    "UPDATE refusals SET state = ?, finished_at = ? WHERE id = ?",
                    (done, now, refusal_id),
                )
        if not applied:
            return []
        return [r for r in self.refusals(RefusalState.APPLIED) if r.id in applied]

    # -- the guard's window ------------------------------------------------------------

    def note_guarded_changes(
        self, deleted: Iterable[str], created: Iterable[str], *, now: float
    ) -> None:
        """Remember the deletes of locally deleted files and the new files uploaded by a
        partial pass, for the guard's window."""
        entries = [(p, now, "delete") for p in deleted] + [(p, now, "new") for p in created]
        with self._write() as conn:
            conn.executemany("INSERT INTO guard_deletes (path, at, kind) VALUES (?, ?, ?)", entries)
            conn.execute("DELETE FROM guard_deletes WHERE at < ?", (now - GUARD_MEMORY_SECONDS,))

    def guarded_deletes_since(self, since: float) -> int:
        """Deletes since ``since``, except those of files a partial pass uploaded as new
        within the window (created and deleted again: churn, not a mass delete)."""
        if not self.has_table("guard_deletes"):
            return 0
        rows = self._query(
            "SELECT count(*) AS n FROM guard_deletes d WHERE d.kind = 'delete' AND d.at >= ? "
            "AND NOT EXISTS (SELECT 1 FROM guard_deletes c WHERE c.kind = 'new' "
            "AND c.path = d.path AND c.at >= ? AND c.at <= d.at)",
            (since, since),
        )
        return int(rows[0]["n"])

    # -- delayed deletes ---------------------------------------------------------------

    def pending_deletes(self) -> dict[str, PendingDelete]:
        if not self.has_table("pending_deletes"):
            return {}
        rows = self._query("SELECT path, file_id, since, due_at FROM pending_deletes")
        return {r["path"]: PendingDelete(**r) for r in rows}

    def defer_deletes(self, copies: Sequence[Copy], *, now: float, due_at: float) -> None:
        """Start the delay of these copies (their local files were just deleted)."""
        with self._write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO pending_deletes (path, file_id, since, due_at) "
                "VALUES (?, ?, ?, ?)",
                [(path, file_id, now, due_at) for path, file_id in copies],
            )

    def prune_pending_deletes(self) -> None:
        """Forget pending deletes whose copy is no longer tracked (it was deleted, or
        the path was forgotten or uploaded anew)."""
        with self._write() as conn:
            conn.execute(
                "DELETE FROM pending_deletes WHERE NOT EXISTS (SELECT 1 FROM files f WHERE "
                "f.path = pending_deletes.path AND f.file_id = pending_deletes.file_id)"
            )

    def cancel_pending(self, paths: Iterable[str]) -> None:
        """Forget the pending deletes of ``paths`` (the file is back, or it was deleted)."""
        with self._write() as conn:
            conn.executemany("DELETE FROM pending_deletes WHERE path = ?", [(p,) for p in paths])


def who_am_i() -> str:
    """``user@host (pid N)`` for ``approved_by``: never a secret, always something."""
    try:
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        user = f"uid {os.getuid()}"
    return f"{user}@{os.uname().nodename} (pid {os.getpid()})"
