"""What ``syncd status`` and ``syncd ls --vector-store`` show of a mirror's vector store.

``status`` reads the ledger only (read-only, no network): per store the attachments of
the files the ledger tracks (completed / in progress / failed), the store as last
retrieved (usage, file counts, expiry) and each failed attachment with its reason.
``ls --vector-store`` lists the store's files over the API, marking who attached each:
this ledger (by its owner tag), another syncd ledger, or someone else.
The text lines of both show what a server sent (ids, statuses, error codes and
messages) and local paths with control characters escaped (``printable``); the JSON
forms are escaped by JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncd.restore.names import printable
from syncd.state.ledger import ErrorKind, Ledger
from syncd.state.vector_ledger import AttachState, VectorLedger
from syncd.vector_api import StoreFile

IN_PROGRESS_STATES = (AttachState.PENDING, AttachState.ATTACHING, AttachState.IN_PROGRESS)


def _when(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def vector_status_json(ledger: Ledger, now: float | None = None) -> list[dict[str, Any]]:
    """The ``vector_stores`` part of ``syncd status --json``."""
    now = time.time() if now is None else now
    vl = VectorLedger(ledger)
    found: list[dict[str, Any]] = []
    for row in vl.stores():
        status = row.status_dict()
        counts = vl.current_counts(row.store_id) if row.store_id else {}
        expires_days = status.get("expires_after_days")
        entry: dict[str, Any] = {
            "store": row.key.split(":", 1)[1],
            "id": row.store_id,
            "state": row.state,
            "created_by_syncd": bool(row.created_by_syncd),
            "completed": counts.get(AttachState.COMPLETED, 0),
            "in_progress": sum(counts.get(s, 0) for s in IN_PROGRESS_STATES),
            "failed": counts.get(AttachState.FAILED, 0) + counts.get(AttachState.FOREIGN, 0),
            "old_versions": vl.retained_versions() if row.store_id else 0,
            "usage_bytes": status.get("usage_bytes"),
            "file_counts": status.get("file_counts"),
            "expires_after_days": expires_days,
            "expires_at": status.get("expires_at"),
            "checked": _when(row.checked_at),
            "error": row.last_error,
            "warning": None
            if expires_days is None
            else f"the store expires {expires_days} days after its last activity: if "
            "nothing uses it that long it is deleted with its index",
            "problems": [],
        }
        for problem in vl.problems(row.store_id) if row.store_id else []:
            retry = None
            if problem.error_kind == ErrorKind.RETRYABLE and problem.next_attempt_at:
                retry = max(0.0, round(problem.next_attempt_at - now, 1))
            entry["problems"].append(
                {
                    "path": problem.path,
                    "reason": problem.last_error,
                    "state": problem.state.value,
                    "permanent": problem.error_kind == ErrorKind.PERMANENT
                    or problem.state is AttachState.FOREIGN,
                    "attempts": problem.attempts,
                    "retry_in_seconds": retry,
                }
            )
        found.append(entry)
    return found


def vector_status_lines(stores: list[dict[str, Any]]) -> list[str]:
    """``syncd status``'s lines for its stores."""
    lines: list[str] = []
    for store in stores:
        name = printable(store["id"] or "(not created yet)")
        if store["id"] and store["store"] != store["id"]:
            name += f" ('{printable(store['store'])}')"
        usage = store["usage_bytes"]
        line = (
            f"vector store: {name}: {store['completed']} completed, {store['in_progress']} "
            f"in progress, {store['failed']} failed"
        )
        if usage is not None:
            line += f"; {_size(usage)} used (as of {store['checked']})"
        lines.append(line)
        if store["old_versions"]:
            lines.append(
                f"  {store['old_versions']} old versions kept until their successor is indexed"
            )
        if store["error"]:
            lines.append(f"  problem: {printable(store['error'])}")
        if store["warning"]:
            expires = store["expires_at"]
            when = f" (now {_when(expires)})" if expires else ""
            lines.append(f"  warning: {store['warning']}{when}")
        for problem in store["problems"]:
            if problem["permanent"]:
                note = "not retried until the file changes"
            elif problem["retry_in_seconds"] is not None:
                note = (
                    f"attempt {problem['attempts']}, retried in {problem['retry_in_seconds']:g} s"
                )
            else:
                note = f"attempt {problem['attempts']}"
            reason = printable(problem["reason"] or "")
            lines.append(f"  {printable(problem['path'])}: {reason} ({note})")
    return lines


# -- syncd ls --vector-store --------------------------------------------------------------


@dataclass(frozen=True)
class StoreEntry:
    """One file of a store, and who attached it."""

    file: StoreFile
    owner: str  # "this" | "syncd" (another ledger) | "other"
    ledger: Path | None = None


def classify(files: list[StoreFile], owners: dict[str, Path]) -> list[StoreEntry]:
    """``owners``: the owner tag of each ledger consulted -> its ledger file."""
    entries = []
    for item in files:
        tag = item.owner
        if tag is not None and tag in owners:
            entries.append(StoreEntry(item, "this", owners[tag]))
        elif tag is not None and tag.startswith("syncd-"):
            entries.append(StoreEntry(item, "syncd"))
        else:
            entries.append(StoreEntry(item, "other"))
    return entries


def entry_json(entry: StoreEntry) -> dict[str, Any]:
    item = entry.file
    path = item.attributes.get("path")
    return {
        "id": item.file_id,
        "status": item.status,
        "usage_bytes": item.usage_bytes,
        "owned": entry.owner == "this",
        "attached_by": {"this": "this ledger", "syncd": "another syncd ledger"}.get(
            entry.owner, "someone else"
        ),
        "path": path if entry.owner == "this" else None,
        "attributes": item.attributes,
        "ledger": str(entry.ledger) if entry.ledger else None,
        "last_error": item.failure if item.status == "failed" else None,
    }


def entry_line(entry: StoreEntry) -> str:
    item = entry.file
    mark = {"this": "*", "syncd": "+"}.get(entry.owner, " ")
    path = item.attributes.get("path")
    where = f"  -> {printable(str(path))}" if entry.owner == "this" and path else ""
    who = "" if entry.owner == "this" else f"  ({entry_json(entry)['attached_by']})"
    return (
        f"{printable(item.file_id):30} {printable(item.status):11} {item.usage_bytes:>12} "
        f"{mark}{where}{who}"
    )
