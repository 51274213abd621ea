"""What a pass reports: per-action outcomes, the pass result, and the reporter hook.

Kept apart from ``syncd.sync.engine`` so that commands, the progress bar and the daemon can
use the result types without the engine's machinery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from syncd.local.scan import ScanProblem, ScanResult
from syncd.state.deletes import Refusal
from syncd.sync.plan import Action, ActionKind, Plan
from syncd.sync.reconcile import ReconcileReport
from syncd.sync.vector_report import VectorReport


class OutcomeStatus(StrEnum):
    DONE = "done"
    REFRESHED = "refreshed"  # same content after all: only the ledger's stat changed
    FAILED = "failed"
    AMBIGUOUS = "ambiguous"  # the answer was lost; settled by reconciliation
    VANISHED = "vanished"  # the file went away before it could be read
    CHANGED = "changed"  # the file changed while it was sent; nothing stored, queued again
    FATAL = "fatal"
    NOT_RUN = "not_run"
    ABANDONED = "abandoned"  # still in flight when a stop's grace ran out; intent open


@dataclass
class Outcome:
    """How one action ended."""

    action: Action
    status: OutcomeStatus
    file_id: str | None = None
    bytes: int = 0
    reason: str = ""
    permanent: bool = False
    attempt: int = 1
    duration: float = 0.0
    intent_id: int | None = None
    stale: bool = False  # uploaded, but the file changed meanwhile: queued again
    fatal_cause: str | None = None  # FATAL: the FatalError's cause ("key", "endpoint", ...)


class Reporter(Protocol):
    """Hooks the engine calls (from worker threads too): progress bars, log lines."""

    def pass_started(self, plan: Plan, scan: ScanResult) -> None: ...

    def action_started(self, action: Action) -> None: ...

    def action_finished(self, outcome: Outcome) -> None: ...

    def pass_finished(self, result: PassResult) -> None: ...


class NullReporter:
    def pass_started(self, plan: Plan, scan: ScanResult) -> None:
        pass

    def action_started(self, action: Action) -> None:
        pass

    def action_finished(self, outcome: Outcome) -> None:
        pass

    def pass_finished(self, result: PassResult) -> None:
        pass


_COUNTED = {
    ActionKind.UPLOAD: "uploaded",
    ActionKind.REPLACE: "replaced",
    ActionKind.DELETE: "deleted",
    ActionKind.FORGET: "forgotten",
    ActionKind.REFRESH: "refreshed",
    ActionKind.DEFER: "delayed",  # delete_delay: the delete is pending
}


@dataclass
class PassResult:
    """Everything one pass did and did not do."""

    started_at: float
    finished_at: float = 0.0
    dry_run: bool = False
    plan: Plan | None = None
    counts: dict[str, int] = field(default_factory=dict)
    bytes_uploaded: int = 0
    failures: list[Outcome] = field(default_factory=list)
    still_failing: list[tuple[str, str, bool]] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    requeued: set[str] = field(default_factory=set)
    unfinished: set[str] = field(default_factory=set)  # not handled: stay in the dirty queue
    refusal: str | None = None
    fatal: str | None = None
    fatal_cause: str | None = None  # FatalError.cause: what must change before a retry
    interrupted: bool = False  # a stop was requested (Ctrl-C, SIGTERM) during the pass
    deletes_skipped: int = 0
    reconciled: ReconcileReport | None = None
    # The remote's pacing in this pass, per route (``syncd.sync.pacing_log``).
    pacing: list[dict[str, Any]] = field(default_factory=list)
    vectors: VectorReport | None = None  # the vector store's step, when the mirror keeps one
    # Refusals an operator approved whose deletes this pass completed (issue 17).
    approvals_applied: list[Refusal] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        """Count one finished action (called from the engine's collecting thread)."""
        status = outcome.status
        if status is OutcomeStatus.FAILED:
            self.failures.append(outcome)
        elif status in (OutcomeStatus.VANISHED, OutcomeStatus.CHANGED):
            self._count(status.value)
            self.requeued.add(outcome.action.path)
        elif status in (OutcomeStatus.NOT_RUN, OutcomeStatus.FATAL, OutcomeStatus.ABANDONED):
            if status is not OutcomeStatus.FATAL:
                self._count(status.value)
            self.unfinished.add(outcome.action.path)
        elif status is OutcomeStatus.REFRESHED:
            self._count("refreshed")
        elif status is OutcomeStatus.DONE:
            self._count(_COUNTED[outcome.action.kind])
            if outcome.action.kind in (ActionKind.UPLOAD, ActionKind.REPLACE):
                self.bytes_uploaded += outcome.bytes
            if outcome.stale:
                self.requeued.add(outcome.action.path)

    def stop_fatal(self, reason: str, cause: str | None) -> None:
        """The pass cannot go on (``FatalError``); the first reason is the one kept."""
        if self.fatal is None:
            self.fatal, self.fatal_cause = reason, cause

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def absorb(self, later: PassResult) -> None:
        """Fold in a follow-up pass over the paths this one queued again."""
        for key, value in later.counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        self.bytes_uploaded += later.bytes_uploaded
        self.failures += later.failures
        self.still_failing += later.still_failing
        self.problems += later.problems
        self.warnings += later.warnings
        self.requeued = set(later.requeued)
        self.unfinished |= later.unfinished
        self.refusal = self.refusal or later.refusal
        if later.fatal:
            self.stop_fatal(later.fatal, later.fatal_cause)
        self.interrupted = self.interrupted or later.interrupted
        self.deletes_skipped += later.deletes_skipped
        self.pacing = self.pacing or later.pacing
        self.approvals_applied += later.approvals_applied
        self.finished_at = later.finished_at
        if later.reconciled is not None:
            self.merge_reconcile(later.reconciled)
        if later.vectors is not None:
            self.vectors = later.vectors  # the later step sees the store as it is now

    def merge_reconcile(self, report: ReconcileReport) -> None:
        if self.reconciled is None:
            self.reconciled = ReconcileReport()
        mine = self.reconciled
        mine.adopted.update(report.adopted)
        mine.duplicates_deleted += report.duplicates_deleted
        mine.deletes_finished += report.deletes_finished
        mine.not_stored += report.not_stored
        mine.kept += report.kept
        mine.errors += report.errors

    @property
    def in_sync(self) -> bool:
        """True when the remote holds exactly what the folder holds (as far as known)."""
        return not (
            self.failures
            or self.still_failing
            or any(p.error for p in self.problems)
            or self.refusal
            or self.fatal
            or self.interrupted
            or self.deletes_skipped
            or self.counts.get("not_run")
            or self.counts.get("abandoned")
            or self.requeued
            or (self.reconciled is not None and self.reconciled.errors)
            or (self.vectors is not None and not self.vectors.exact)
        )

    @property
    def verdict(self) -> str:
        if self.dry_run:
            return "dry-run"
        if self.fatal:
            return "fatal"
        if self.interrupted:
            return "interrupted"
        if self.refusal:
            return "refused"
        return "ok" if self.in_sync else "incomplete"

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary (``syncd sync --json``, the passes table)."""
        data: dict[str, Any] = {
            "result": self.verdict,
            "in_sync": self.in_sync,
            "duration_seconds": round(self.finished_at - self.started_at, 3),
            "counts": dict(sorted(self.counts.items())),
            "bytes_uploaded": self.bytes_uploaded,
            "skipped": self.plan.skip_counts() if self.plan else {},
            "failed": [
                {
                    "path": o.action.path,
                    "action": o.action.kind.value,
                    "reason": o.reason,
                    "permanent": o.permanent,
                }
                for o in self.failures
            ]
            + [
                {"path": p, "action": "skip", "reason": r, "permanent": perm}
                for p, r, perm in self.still_failing
            ],
            "problems": [
                {"path": p.path, "reason": p.reason, "error": p.error} for p in self.problems
            ],
            "warnings": self.warnings,
            "requeued": sorted(self.requeued),
            "refusal": self.refusal,
            "fatal": self.fatal,
            "fatal_cause": self.fatal_cause,
            "interrupted": self.interrupted,
            "deletes_skipped": self.deletes_skipped,
        }
        if self.pacing:
            data["pacing"] = self.pacing
        if self.vectors is not None:
            data["vector_store"] = self.vectors.to_json()
        if self.reconciled is not None:
            r = self.reconciled
            data["reconciled"] = {
                "adopted": len(r.adopted),
                "duplicates_deleted": len(r.duplicates_deleted),
                "deletes_finished": r.deletes_finished,
                "not_stored": len(r.not_stored),
                "kept_possibly_ours": len(r.kept),
                "errors": r.errors,
            }
        if self.dry_run and self.plan is not None:
            data["planned"] = [
                {"action": a.kind.value, "path": a.path, "reason": a.reason}
                for a in self.plan.actions
            ] + [
                {"action": "refused-delete", "path": a.path, "reason": a.reason}
                for a in self.plan.refused
            ]
        return data

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)
