"""How a pass shows itself: a progress bar in a terminal, log lines everywhere else.

``LogReporter`` writes one structured log line per finished action (path, action,
file_id, bytes, duration, attempt), which is what journald and cron want.
``ProgressReporter`` draws a rich progress bar (files and bytes) on stderr, but only
once a pass has run for ``DELAY_SECONDS`` so quick passes stay quiet; while it is shown,
failures are printed above the bar as one line each (path and reason with control
characters escaped: ``printable``), and so is whatever else is written
to ``sys.stderr`` (log lines, messages), instead of breaking the bar.
"""

from __future__ import annotations

import threading
from typing import IO

import structlog
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from syncd.local.scan import ScanResult
from syncd.restore.names import printable
from syncd.sync.plan import Action, ActionKind, Plan
from syncd.sync.result import Outcome, OutcomeStatus, PassResult, Reporter

DELAY_SECONDS = 1.0

log = structlog.get_logger(__name__)

_EVENTS = {
    ActionKind.UPLOAD: "uploaded",
    ActionKind.REPLACE: "replaced",
    ActionKind.DELETE: "deleted",
    ActionKind.FORGET: "forgotten",
    ActionKind.REFRESH: "refreshed",
    ActionKind.DEFER: "delete_delayed",
}


def _transfer_bytes(action: Action) -> int:
    if action.kind in (ActionKind.UPLOAD, ActionKind.REPLACE) and action.local is not None:
        return action.local.size
    return 0


class LogReporter:
    """One structured log line per finished action."""

    def pass_started(self, plan: Plan, scan: ScanResult) -> None:
        log.debug(
            "planned",
            actions=len(plan.actions),
            skipped=plan.skip_counts(),
            hashed_bytes=scan.hashed_bytes,
        )

    def action_started(self, action: Action) -> None:
        pass

    def action_finished(self, outcome: Outcome) -> None:
        action = outcome.action
        fields = {
            "path": action.path,
            "action": action.kind.value,
            "file_id": outcome.file_id,
            "bytes": outcome.bytes,
            "duration": round(outcome.duration, 3),
            "attempt": outcome.attempt,
        }
        if outcome.status is OutcomeStatus.FAILED:
            log.warning("failed", reason=outcome.reason, permanent=outcome.permanent, **fields)
        elif outcome.status is OutcomeStatus.DONE:
            log.info(_EVENTS[action.kind], **fields)
        elif outcome.status is not OutcomeStatus.NOT_RUN:
            log.info(outcome.status.value, reason=outcome.reason, **fields)

    def pass_finished(self, result: PassResult) -> None:
        pass


class ProgressReporter:
    """A files-and-bytes progress bar on a terminal, shown after ``DELAY_SECONDS``."""

    def __init__(self, stream: IO[str]) -> None:
        self.console = Console(file=stream, stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=True,  # log lines go above the bar (LineSink writes sys.stderr)
        )
        self._task: TaskID | None = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._shown = False

    def pass_started(self, plan: Plan, scan: ScanResult) -> None:
        work = [
            a
            for a in plan.actions
            if a.kind in (ActionKind.UPLOAD, ActionKind.REPLACE, ActionKind.DELETE)
        ]
        if not work:
            return
        total_bytes = sum(_transfer_bytes(a) for a in work)
        self._task = self.progress.add_task(
            f"syncing 0/{len(work)} files", total=total_bytes or None
        )
        self._files_total = len(work)
        self._files_done = 0
        self._timer = threading.Timer(DELAY_SECONDS, self._show)
        self._timer.daemon = True
        self._timer.start()

    def _show(self) -> None:
        with self._lock:
            if self._task is not None and not self._shown:
                self.progress.start()
                self._shown = True

    @property
    def shown(self) -> bool:
        """Whether the bar is on the screen now."""
        return self._shown

    def action_started(self, action: Action) -> None:
        pass

    def action_finished(self, outcome: Outcome) -> None:
        if self._task is None:
            return
        with self._lock:
            self._files_done += 1
            self.progress.update(
                self._task,
                advance=_transfer_bytes(outcome.action),
                description=f"syncing {self._files_done}/{self._files_total} files",
            )
        if outcome.status is OutcomeStatus.FAILED and self._shown:
            path, reason = printable(outcome.action.path), printable(outcome.reason)
            self.console.print(
                f"[red]failed[/red] {escape(path)}: {escape(reason)}",
                markup=True,
                highlight=False,
            )

    def pass_finished(self, result: PassResult) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            if self._shown:
                self.progress.stop()
            if self._task is not None:
                self.progress.remove_task(self._task)
            self._task = None
            self._shown = False


def make_reporter(stream: IO[str], *, interactive: bool | None = None) -> Reporter:
    """The progress bar on a terminal, log lines otherwise."""
    if interactive if interactive is not None else stream.isatty():
        return ProgressReporter(stream)
    return LogReporter()
