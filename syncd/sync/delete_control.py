"""The engine's part in holding deletes back: the guard's window, approvals, delays.

``DeleteControl`` is what a pass asks of the ledger before planning and tells it after
(the rules themselves are the planner's, ``syncd.sync.plan``):

- before planning (``plan_fields``): the deletes an operator approved, the deletes
  carried out within the guard's window (``guard_window`` seconds, the daemon's rescan
  interval; 0 for ``syncd sync``, whose one pass is the whole run), the command a
  refusal names, the delete delay and the pending deletes;
- while executing (``defer``): record the deletes the plan deferred, in one
  transaction, and forget the pending deletes whose file is back (``Plan.cancelled``);
- after the pass (``after_pass``): note the deletes it carried out (for the window;
  approved ones do not count) and the new files a partial pass uploaded (a delete of
  one of those within the window is churn and does not count), record a refusal (the
  same refusal seen again is the same one), and settle the refusals: an approved one
  whose deletes are all done is ``applied`` (``PassResult.approvals_applied``); a full
  pass that refused nothing clears an open one.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable
from typing import Any

from syncd.config import MirrorConfig
from syncd.state.deletes import RefusalState
from syncd.state.ledger import Ledger
from syncd.sync.plan import Action, ActionKind, Plan, Skip
from syncd.sync.result import Outcome, OutcomeStatus, PassResult


def approve_command(mirror: MirrorConfig) -> str:
    """The command that approves this mirror's refused deletes."""
    command = f"syncd approve-deletes {shlex.quote(str(mirror.folder))}"
    if mirror.state_path is not None:
        command += f" --state {shlex.quote(str(mirror.state_path))}"
    return command


class DeleteControl:
    """See the module docstring. One per engine; ``deleted`` is called from the engine's
    collecting thread, the rest from the pass's thread."""

    def __init__(
        self,
        mirror: MirrorConfig,
        ledger: Ledger,
        *,
        clock: Callable[[], float],
        guard_window: float = 0.0,
    ) -> None:
        self.mirror = mirror
        self.ledger = ledger
        self.clock = clock
        self.guard_window = guard_window
        self._lock = threading.Lock()
        self._deleted: list[str] = []  # this pass's deletes of locally deleted files
        self._created: list[str] = []  # and its uploads of new files
        self._approved: frozenset[tuple[str, str]] = frozenset()
        self._full = True
        self._waiting: set[str] = set()  # the paths of the refusal waiting for approval

    def plan_fields(self, *, full: bool) -> dict[str, Any]:
        """The ``PlanOptions`` fields this module decides, for a full or partial pass."""
        now = self.clock()
        self._full = full
        self._approved = self.ledger.approved_deletes()
        self._waiting = {
            path for r in self.ledger.refusals(RefusalState.OPEN) for path, _ in r.copies
        }
        with self._lock:
            self._deleted, self._created = [], []
        recent = 0
        if self.guard_window > 0:
            recent = self.ledger.guarded_deletes_since(now - self.guard_window)
        return {
            "recent_deletes": recent,
            "guard_window": self.guard_window,
            "approved": self._approved,
            "approve_hint": approve_command(self.mirror),
            "delete_delay": self.mirror.delete_delay,
            "pending_deletes": self.ledger.pending_deletes(),
        }

    def defer(self, plan: Plan) -> list[Outcome]:
        """Record the deferred deletes and the cancelled ones (one transaction each)."""
        if plan.cancelled:
            self.ledger.cancel_pending(plan.cancelled)
        deferred = [
            a for a in plan.of_kind(ActionKind.DEFER) if a.row is not None and a.row.file_id
        ]
        if not deferred:
            return []
        now = self.clock()
        self.ledger.defer_deletes(
            [(a.path, a.row.file_id) for a in deferred if a.row is not None and a.row.file_id],
            now=now,
            due_at=now + self.mirror.delete_delay,
        )
        return [Outcome(a, OutcomeStatus.DONE, file_id=_file_id(a)) for a in deferred]

    def deleted(self, outcome: Outcome) -> None:
        """One finished action: deletes of locally deleted files and uploads of new files
        count for the window."""
        action = outcome.action
        if outcome.status is not OutcomeStatus.DONE:
            return
        if action.kind is ActionKind.UPLOAD and action.row is None:
            if self._full:
                return  # a full pass uploads what the folder held: the baseline
            with self._lock:
                self._created.append(action.path)
            return
        if action.kind is not ActionKind.DELETE:
            return
        row = action.row
        if row is not None and (action.path, row.file_id) in self._approved:
            return  # approved by an operator: not evidence of a mass delete
        with self._lock:
            self._deleted.append(action.path)

    def after_pass(self, result: PassResult, *, full: bool) -> None:
        now = self.clock()
        with self._lock:
            deleted, self._deleted = self._deleted, []
            created, self._created = self._created, []
        if (deleted or created) and self.guard_window > 0:
            self.ledger.note_guarded_changes(deleted, created, now=now)
        plan = result.plan
        if plan is None:
            return
        if plan.refusal and plan.refused:
            self.ledger.record_refusal(
                plan.refusal,
                [(a.path, a.row.file_id) for a in plan.refused if a.row and a.row.file_id],
                tracked=self.ledger.tracked_count(),
                now=now,
            )
        if self._waiting:  # files of the waiting refusal that are back: not to approve
            back = {a.path for a in plan.actions if a.kind is not ActionKind.DELETE} | {
                path for path, why in plan.skipped if why in (Skip.UNCHANGED, Skip.EXCLUDED)
            }
            back &= self._waiting - {a.path for a in plan.refused}
            if back:
                self.ledger.drop_refused(back)
        cleared = full and not plan.refusal and not result.fatal and not result.interrupted
        result.approvals_applied = self.ledger.settle_refusals(now=now, cleared=cleared)
        self.ledger.prune_pending_deletes()


def _file_id(action: Action) -> str | None:
    return action.row.file_id if action.row is not None else None
