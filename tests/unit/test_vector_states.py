"""What a store file's status means for its attachment row (pure), the poll backoff, and
the step's summary: which files count as completed, in progress, failed or waiting."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from syncd.state.ledger import ErrorKind
from syncd.state.vector_ledger import Attachment, AttachState
from syncd.sync.vector_plan import Wanted, summarise
from syncd.sync.vector_report import VectorReport
from syncd.sync.vector_states import failure, poll_interval, status_change
from syncd.vector_api import StoreFile

NOW = 1000.0
ROW = Attachment("vs_1", "f1", "a.md", AttachState.ATTACHING, started_at=990.0, attempts=2)


def found(status: str, code: str | None = None, **kw: Any) -> StoreFile:
    return StoreFile(
        "f1", "vs_1", status, error_code=code, error_message="m" if code else None, **kw
    )


@pytest.mark.parametrize(
    ("polls", "wait"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (30, 5.0)]
)
def test_poll_backoff(polls: int, wait: float) -> None:
    """Polls back off from 0.5 s, doubling, to at most 5 s."""
    assert poll_interval(polls) == wait


@pytest.mark.parametrize(
    ("row", "answer", "expected"),
    [
        (
            ROW,
            found("in_progress"),
            {
                "state": AttachState.IN_PROGRESS,
                "polls": 1,
                "next_poll_at": NOW + 0.5,
                "deadline": 990.0 + 60,
                "last_error": None,
            },
        ),
        (
            replace(ROW, state=AttachState.IN_PROGRESS, polls=3, deadline=1500.0),
            found("in_progress"),
            {"polls": 4, "next_poll_at": NOW + 4.0, "deadline": 1500.0},
        ),
        (
            ROW,
            found("completed", usage_bytes=7),
            {
                "state": AttachState.COMPLETED,
                "usage_bytes": 7,
                "attempts": 0,
                "last_error": None,
                "next_attempt_at": None,
            },
        ),
        (
            ROW,
            found("failed", "unsupported_file"),
            {
                "state": AttachState.FAILED,
                "error_kind": ErrorKind.PERMANENT,
                "next_attempt_at": None,
                "attempts": 3,
                "last_error": "indexing failed: unsupported_file: m",
            },
        ),
        (ROW, found("failed", "invalid_file"), {"error_kind": ErrorKind.PERMANENT}),
        (
            ROW,
            found("failed", "server_error"),
            {"error_kind": ErrorKind.RETRYABLE, "attempts": 3, "next_attempt_at": NOW + 240.0},
        ),
        (
            ROW,
            found("cancelled"),
            {
                "state": AttachState.FAILED,
                "error_kind": ErrorKind.RETRYABLE,
                "last_error": "indexing ended cancelled",
            },
        ),
    ],
)
def test_status_change(row: Attachment, answer: StoreFile, expected: dict[str, Any]) -> None:
    """Each status becomes its row state; failures are permanent only for content the
    store cannot read, else retried after the per-file backoff (attempt 3: 4 min)."""
    change = status_change(row, answer, NOW, indexing_deadline=60.0)
    assert {k: change[k] for k in expected} == expected


def test_an_answer_without_attributes_keeps_the_recorded_ones() -> None:
    """``seen=False`` (a file a batch poll found done) leaves the row's attributes alone."""
    assert "attributes" not in status_change(
        ROW, found("completed"), NOW, indexing_deadline=1, seen=False
    )
    seen = status_change(ROW, found("completed", attributes={"k": 1}), NOW, indexing_deadline=1)
    assert seen["attributes"] == '{"k":1}'


def test_failure_counts_an_attempt() -> None:
    """A failure adds an attempt and, when retryable, waits the backoff of that attempt."""
    assert failure(ROW, "x", False, NOW)["next_attempt_at"] == NOW + 240.0
    assert failure(ROW, "x", True, NOW)["next_attempt_at"] is None


def want(path: str, file_id: str) -> Wanted:
    return Wanted(path, file_id, "h", "{}", None)


def test_summary_counts_and_the_next_due_time() -> None:
    """Completed, indexing and failed files are counted; an attach waiting out its
    backoff is a failure, not in progress; an old version waits only while its
    successor indexes; the next step is due at the earliest poll, deadline or retry."""
    wanted = {
        p: want(p, f)
        for p, f in (("a.md", "a2"), ("b.md", "b1"), ("c.md", "c1"), ("d.md", "d1"), ("e.md", "e1"))
    }
    rows = [
        Attachment(
            "vs_1", "a2", "a.md", AttachState.IN_PROGRESS, next_poll_at=NOW + 3, started_at=NOW - 1
        ),
        Attachment("vs_1", "a1", "a.md", AttachState.COMPLETED),  # old version, successor indexing
        Attachment("vs_1", "b1", "b.md", AttachState.COMPLETED),
        Attachment(
            "vs_1",
            "c1",
            "c.md",
            AttachState.FAILED,
            error_kind=ErrorKind.RETRYABLE,
            last_error="boom",
            next_attempt_at=NOW + 60,
        ),
        Attachment(
            "vs_1",
            "d1",
            "d.md",
            AttachState.ATTACHING,
            last_error="attach request failed",
            next_attempt_at=NOW + 120,
        ),
        Attachment(
            "vs_1", "e0", "e.md", AttachState.COMPLETED
        ),  # old version, successor not attached
    ]
    report = VectorReport("'docs'")
    due = summarise(report, "vs_1", wanted, {r.key: r for r in rows}, now=NOW, indexing_deadline=30)
    assert (report.completed, report.in_progress, report.failed) == (1, 2, 2)
    assert sorted(p for p, _, _ in report.failures) == ["c.md", "d.md"]
    assert report.waiting == 2 and not report.settled and not report.exact
    assert due == NOW  # e.md is not attached yet: due now
    done = [replace(rows[0], state=AttachState.COMPLETED), rows[2], rows[3], rows[4]]
    settled = VectorReport("'docs'")
    due = summarise(
        settled,
        "vs_1",
        {p: wanted[p] for p in ("a.md", "b.md", "c.md", "d.md")},
        {r.key: r for r in done},
        now=NOW,
    )
    assert settled.settled and not settled.exact and due == NOW + 60
