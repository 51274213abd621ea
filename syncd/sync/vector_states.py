"""How an attachment's row changes with what the store says: pure functions, no I/O.

Each returns the columns to set on a ``vector_attachments`` row
(``VectorLedger.update``): what a store file's status means for it
(``status_change``), a failure with its retry verdict and backoff (``failure``), a poll
put off (``poll_later``), an attachment known not to be there (``pending``) or found
attached by someone else (``foreign``). ``syncd.sync.vectors`` and
``syncd.sync.vector_poll`` apply them; tests/unit/test_vector_states.py pins them.
"""

from __future__ import annotations

from typing import Any

from syncd.state.ledger import ErrorKind, backoff_seconds
from syncd.state.vector_ledger import Attachment, AttachState, dumps
from syncd.vector_api import PERMANENT_ERROR_CODES, StoreFile

POLL_FIRST_SECONDS = 0.5
POLL_MAX_SECONDS = 5.0


def poll_interval(polls: int) -> float:
    """Wait before poll number ``polls + 1`` of a file still indexing (0.5 s doubling to
    5 s: one request while nothing changed is cheap, and a late poll delays the store)."""
    return float(min(POLL_FIRST_SECONDS * 2.0**polls, POLL_MAX_SECONDS))


def status_change(
    row: Attachment,
    found: StoreFile,
    now: float,
    *,
    indexing_deadline: float,
    seen: bool = True,
) -> dict[str, Any]:
    """The row's columns for what the store says of the file now (``seen``: the answer
    carried its attributes, else the row keeps those it recorded).

    ``in_progress``: polled again with backoff, its deadline counted from the attach;
    ``completed``: done, errors and attempts cleared; ``failed``: a failure, permanent
    for ``unsupported_file``/``invalid_file`` (the same content fails again), else
    retried with backoff; ``cancelled``: a retryable failure."""
    values: dict[str, Any] = {"updated_at": now}
    if seen:
        values["attributes"] = dumps(found.attributes)
    if found.status == "in_progress":
        started = row.started_at or now
        polls = row.polls if row.state is AttachState.IN_PROGRESS else 0
        return values | {
            "state": AttachState.IN_PROGRESS,
            "deadline": row.deadline or started + indexing_deadline,
            "next_poll_at": now + poll_interval(polls),
            "polls": polls + 1,
            "last_error": None,
            "error_kind": None,
            "next_attempt_at": None,
        }
    if found.status == "completed":
        return values | {
            "state": AttachState.COMPLETED,
            "usage_bytes": found.usage_bytes,
            "deadline": None,
            "next_poll_at": None,
            "last_error": None,
            "error_kind": None,
            "attempts": 0,
            "next_attempt_at": None,
        }
    if found.status == "failed":
        permanent = found.error_code in PERMANENT_ERROR_CODES
        return values | failure(row, f"indexing failed: {found.failure}", permanent, now)
    return values | failure(row, f"indexing ended {found.status}", False, now)


def failure(row: Attachment, reason: str, permanent: bool, now: float) -> dict[str, Any]:
    """A failed attachment: one more attempt, retried after the usual per-file backoff
    (1 min doubling to 1 h) unless ``permanent``."""
    attempts = row.attempts + 1
    return {
        "state": AttachState.FAILED,
        "last_error": reason,
        "error_kind": ErrorKind.PERMANENT if permanent else ErrorKind.RETRYABLE,
        "attempts": attempts,
        "next_attempt_at": None if permanent else now + backoff_seconds(attempts),
        "deadline": None,
        "next_poll_at": None,
        "updated_at": now,
    }


def poll_later(row: Attachment, now: float) -> dict[str, Any]:
    """Still indexing: the next poll, a little later than the last."""
    return {"next_poll_at": now + poll_interval(row.polls), "polls": row.polls + 1}


def pending(now: float) -> dict[str, Any]:
    """An attachment known not to be in the store (to be attached again)."""
    return {
        "state": AttachState.PENDING,
        "batch_id": None,
        "deadline": None,
        "next_poll_at": None,
        "updated_at": now,
    }


def foreign(found: StoreFile, now: float) -> dict[str, Any]:
    """One of our files, attached without this ledger's owner tag: left alone."""
    return {
        "state": AttachState.FOREIGN,
        "attributes": dumps(found.attributes),
        "last_error": "its attributes do not carry this ledger's owner tag: left alone",
        "updated_at": now,
    }
