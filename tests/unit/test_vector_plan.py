"""The vector store planner (pure): which files the store should hold, and for every
attachment state what a step does. Table-driven, like tests/unit/test_plan.py."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from syncd.state.ledger import ErrorKind, LedgerRow
from syncd.state.vector_ledger import Attachment, AttachState, dumps
from syncd.sync.vector_plan import (
    VectorPlan,
    Wanted,
    plan_store,
    summarise,
    wanted_attachments,
)
from syncd.sync.vector_report import VectorReport
from syncd.vector_api import Chunking
from syncd.vector_config import VectorConfig, VectorRule

NOW = 10_000.0
STORE = "vs_1"
OWNER = "syncd-owner"
CONFIG = VectorConfig(name="docs", attributes=(("team", "a"),))


def tracked(
    path: str, file_id: str, sha: str | None = "h", purpose: str = "user_data"
) -> LedgerRow:
    return LedgerRow(path=path, size=1, sha256=sha, purpose=purpose, file_id=file_id)


def want(path: str, file_id: str, sha: str = "h") -> Wanted:
    attributes = {"team": "a", "path": path, "sha256": sha, "syncd_owner": OWNER}
    return Wanted(path, file_id, sha, dumps(attributes), None)


def att(path: str, file_id: str, state: AttachState, store: str = STORE, **kw: Any) -> Attachment:
    base = Attachment(
        store, file_id, path, state, sha256="h", attributes=want(path, file_id).attributes
    )
    return replace(base, **kw)


def plan(rows: list[LedgerRow], attachments: list[Attachment], **kw: Any) -> VectorPlan:
    by_path = {r.path: r for r in rows}
    wanted, skipped = wanted_attachments(by_path, CONFIG, OWNER)
    return plan_store(
        STORE,
        wanted,
        by_path,
        {a.key: a for a in attachments},
        now=NOW,
        skipped=tuple(skipped),
        **kw,
    )


def summary(p: VectorPlan) -> dict[str, list[str]]:
    """Each non-empty action list as the file ids it names."""
    found: dict[str, list[str]] = {}
    for name in ("attach", "update", "poll", "expire", "retry", "retire", "forget", "unsettled"):
        items = getattr(p, name)
        ids = [i[0].file_id if isinstance(i, tuple) else i.file_id for i in items]
        if ids:
            found[name] = ids
    if p.waiting:
        found["waiting"] = [str(p.waiting)]
    return found


A = tracked("a.md", "f1")
OTHER_ATTRS = dumps({"old": True})

CASES: list[tuple[str, list[LedgerRow], list[Attachment], dict[str, Any], dict[str, list[str]]]] = [
    ("new file: attached", [A], [], {}, {"attach": ["f1"]}),
    (
        "pending, backoff over: attached",
        [A],
        [att("a.md", "f1", AttachState.PENDING, next_attempt_at=NOW - 1)],
        {},
        {"attach": ["f1"]},
    ),
    (
        "pending, backoff running: waits",
        [A],
        [att("a.md", "f1", AttachState.PENDING, next_attempt_at=NOW + 1)],
        {},
        {},
    ),
    (
        "pending, backoff running, sync asked: attached",
        [A],
        [att("a.md", "f1", AttachState.PENDING, next_attempt_at=NOW + 1)],
        {"retry_waiting": True},
        {"attach": ["f1"]},
    ),
    (
        "indexing, poll due",
        [A],
        [att("a.md", "f1", AttachState.IN_PROGRESS, next_poll_at=NOW, deadline=NOW + 60)],
        {},
        {"poll": ["f1"]},
    ),
    (
        "indexing, poll not due",
        [A],
        [att("a.md", "f1", AttachState.IN_PROGRESS, next_poll_at=NOW + 5, deadline=NOW + 60)],
        {},
        {},
    ),
    (
        "indexing past the deadline: expired",
        [A],
        [att("a.md", "f1", AttachState.IN_PROGRESS, next_poll_at=NOW, deadline=NOW)],
        {},
        {"expire": ["f1"]},
    ),
    (
        "a shorter deadline in the config applies to files already indexing",
        [A],
        [
            att(
                "a.md",
                "f1",
                AttachState.IN_PROGRESS,
                next_poll_at=NOW + 5,
                deadline=NOW + 999,
                started_at=NOW - 61,
            )
        ],
        {"indexing_deadline": 60.0},
        {"expire": ["f1"]},
    ),
    (
        "a longer one too: not expired",
        [A],
        [
            att(
                "a.md",
                "f1",
                AttachState.IN_PROGRESS,
                next_poll_at=NOW + 5,
                deadline=NOW,
                started_at=NOW - 61,
            )
        ],
        {"indexing_deadline": 600.0},
        {},
    ),
    (
        "indexing with old attributes: polled and updated",
        [A],
        [
            att(
                "a.md",
                "f1",
                AttachState.IN_PROGRESS,
                next_poll_at=NOW,
                deadline=NOW + 9,
                attributes=OTHER_ATTRS,
            )
        ],
        {},
        {"update": ["f1"], "poll": ["f1"]},
    ),
    (
        "completed, same attributes: nothing",
        [A],
        [att("a.md", "f1", AttachState.COMPLETED)],
        {},
        {},
    ),
    (
        "completed, attributes changed: updated in place",
        [A],
        [att("a.md", "f1", AttachState.COMPLETED, attributes=OTHER_ATTRS)],
        {},
        {"update": ["f1"]},
    ),
    (
        "failed retryable, backoff over: retried",
        [A],
        [
            att(
                "a.md",
                "f1",
                AttachState.FAILED,
                error_kind=ErrorKind.RETRYABLE,
                next_attempt_at=NOW,
            )
        ],
        {},
        {"retry": ["f1"]},
    ),
    (
        "failed retryable, backoff running: waits",
        [A],
        [
            att(
                "a.md",
                "f1",
                AttachState.FAILED,
                error_kind=ErrorKind.RETRYABLE,
                next_attempt_at=NOW + 9,
            )
        ],
        {},
        {},
    ),
    (
        "failed permanent: never retried",
        [A],
        [att("a.md", "f1", AttachState.FAILED, error_kind=ErrorKind.PERMANENT)],
        {"retry_waiting": True},
        {},
    ),
    (
        "old version, new one not attached yet: kept",
        [A],
        [att("a.md", "f0", AttachState.COMPLETED)],
        {},
        {"attach": ["f1"], "waiting": ["1"]},
    ),
    (
        "old version, new one indexing: kept",
        [A],
        [
            att("a.md", "f0", AttachState.COMPLETED),
            att("a.md", "f1", AttachState.IN_PROGRESS, next_poll_at=NOW + 5, deadline=NOW + 9),
        ],
        {},
        {"waiting": ["1"]},
    ),
    (
        "old version, new one completed: retired",
        [A],
        [att("a.md", "f0", AttachState.COMPLETED), att("a.md", "f1", AttachState.COMPLETED)],
        {},
        {"retire": ["f0"]},
    ),
    (
        "old version, new one failed for good: kept (still serving), nothing retried",
        [A],
        [
            att("a.md", "f0", AttachState.COMPLETED),
            att("a.md", "f1", AttachState.FAILED, error_kind=ErrorKind.PERMANENT),
        ],
        {"retry_waiting": True},
        {"waiting": ["1"]},
    ),
    (
        "old version kept behind a failed one, changed again: kept until the next completes",
        [tracked("a.md", "f2")],
        [
            att("a.md", "f0", AttachState.COMPLETED),
            att("a.md", "f1", AttachState.FAILED, error_kind=ErrorKind.PERMANENT),
            att("a.md", "f2", AttachState.IN_PROGRESS, next_poll_at=NOW + 5, deadline=NOW + 9),
        ],
        {},
        {"waiting": ["2"]},
    ),
    (
        "old version kept behind a failed one, a later one completed: both retired",
        [tracked("a.md", "f2")],
        [
            att("a.md", "f0", AttachState.COMPLETED),
            att("a.md", "f1", AttachState.FAILED, error_kind=ErrorKind.PERMANENT),
            att("a.md", "f2", AttachState.COMPLETED),
        ],
        {},
        {"retire": ["f0", "f1"]},
    ),
    (
        "old version kept behind a failed one, path deleted: both retired",
        [],
        [
            att("a.md", "f0", AttachState.COMPLETED),
            att("a.md", "f1", AttachState.FAILED, error_kind=ErrorKind.PERMANENT),
        ],
        {},
        {"retire": ["f0", "f1"]},
    ),
    (
        "old version, new one failed, retrying: kept",
        [A],
        [
            att("a.md", "f0", AttachState.COMPLETED),
            att(
                "a.md",
                "f1",
                AttachState.FAILED,
                error_kind=ErrorKind.RETRYABLE,
                next_attempt_at=NOW + 9,
            ),
        ],
        {},
        {"waiting": ["1"]},
    ),
    (
        "path deleted: its attachment retired",
        [],
        [att("a.md", "f1", AttachState.COMPLETED)],
        {},
        {"retire": ["f1"]},
    ),
    (
        "purpose no longer attachable: out of the store",
        [tracked("a.md", "f1", purpose="fine-tune")],
        [att("a.md", "f1", AttachState.COMPLETED)],
        {},
        {"retire": ["f1"]},
    ),
    (
        "new version still stale: old one kept",
        [tracked("a.md", "f2", sha=None)],
        [att("a.md", "f1", AttachState.COMPLETED)],
        {},
        {"waiting": ["1"]},
    ),
    (
        "another store's current file: forgotten, left there",
        [A],
        [att("a.md", "f1", AttachState.COMPLETED, store="vs_old")],
        {},
        {"attach": ["f1"], "forget": ["f1"]},
    ),
    (
        "another store's old version: retired",
        [A],
        [att("a.md", "f0", AttachState.COMPLETED, store="vs_old")],
        {},
        {"attach": ["f1"], "retire": ["f0"]},
    ),
    (
        "attach intent unsettled: needs the listing",
        [A],
        [att("a.md", "f1", AttachState.ATTACHING)],
        {},
        {"unsettled": ["f1"]},
    ),
    (
        "detach intent unsettled: needs the listing",
        [A],
        [att("a.md", "f0", AttachState.DETACHING)],
        {},
        {"attach": ["f1"], "unsettled": ["f0"]},
    ),
    ("attached by someone else: left alone", [A], [att("a.md", "f1", AttachState.FOREIGN)], {}, {}),
    (
        "someone else's attachment of an old version: forgotten",
        [A],
        [att("a.md", "f0", AttachState.FOREIGN)],
        {},
        {"attach": ["f1"], "forget": ["f0"]},
    ),
]


@pytest.mark.parametrize(
    ("name", "rows", "attachments", "options", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_plan_store(
    name: str,
    rows: list[LedgerRow],
    attachments: list[Attachment],
    options: dict[str, Any],
    expected: dict[str, list[str]],
) -> None:
    """Each attachment state (and each old version) gets exactly the action its row says."""
    assert summary(plan(rows, attachments, **options)) == expected


def test_wanted_attributes_are_the_configs_then_syncds() -> None:
    """Mirror attributes, the matching rule's over them, then path, sha256 and the owner."""
    config = VectorConfig(
        name="docs",
        attributes=(("team", "a"), ("level", 1)),
        chunking=Chunking(1000, 200),
        rules=(VectorRule("hr/**", "assistants", (("team", "hr"),), "auto"),),
    )
    rows = {p: tracked(p, f"id-{p}") for p in ("hr/x.md", "y.md")}
    wanted, skipped = wanted_attachments(rows, config, OWNER)
    assert skipped == []
    hr, plain = wanted["hr/x.md"], wanted["y.md"]
    assert json.loads(hr.attributes) == {
        "team": "hr",
        "level": 1,
        "path": "hr/x.md",
        "sha256": "h",
        "syncd_owner": OWNER,
    }
    assert hr.chunking is None  # the rule says auto
    assert json.loads(plain.attributes)["team"] == "a"
    assert json.loads(plain.chunking or "") == Chunking(1000, 200).to_json()


def test_only_known_attachable_content_is_wanted() -> None:
    """Stale rows, rows without a remote file and purposes file search does not take are
    not wanted; a path too long for an attribute value is skipped with its reason."""
    long_path = "d/" + "x" * 520 + ".md"
    rows = {
        "ok.md": tracked("ok.md", "f1"),
        "stale.md": tracked("stale.md", "f2", sha=None),
        "failed.md": LedgerRow(path="failed.md", sha256="h", purpose="user_data"),
        "tune.jsonl": tracked("tune.jsonl", "f3", purpose="fine-tune"),
        "helper.md": tracked("helper.md", "f4", purpose="assistants"),
        long_path: tracked(long_path, "f5"),
    }
    wanted, skipped = wanted_attachments(rows, CONFIG, OWNER)
    assert sorted(wanted) == ["helper.md", "ok.md"]
    assert [p for p, _ in skipped] == [long_path]
    assert "at most 512" in skipped[0][1]


def test_a_failed_new_version_is_a_failure_while_the_old_one_serves() -> None:
    """The summary of a path whose new version failed for good behind a completed old
    one: a permanent failure saying the old version still serves; nothing to wait for
    (the step is settled, nothing is due), not an old version "waiting"."""
    rows = {"a.md": A}
    wanted, _ = wanted_attachments(rows, CONFIG, OWNER)
    attachments = [
        att("a.md", "f0", AttachState.COMPLETED),
        att(
            "a.md",
            "f1",
            AttachState.FAILED,
            error_kind=ErrorKind.PERMANENT,
            last_error="indexing failed: invalid_file: not text",
        ),
    ]
    report = VectorReport("'docs'")
    due = summarise(report, STORE, wanted, {a.key: a for a in attachments}, now=NOW)
    assert due is None and report.settled and not report.exact
    assert (report.completed, report.failed, report.waiting) == (0, 1, 0)
    ((path, reason, permanent),) = report.failures
    assert path == "a.md" and permanent
    assert reason.startswith("indexing failed: invalid_file: not text; the previous version")
