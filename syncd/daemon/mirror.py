"""One mirrored folder inside the daemon: its ledger, engine, watcher and schedule.

A :class:`MirrorRunner` decides *when* to run a pass; the engine decides what a pass
does. Its schedule, each step running at most one pass:

- a **full pass** at start, after the folder comes back, when the watcher lost events,
  and every ``rescan_interval`` seconds;
- a **partial pass** over the paths whose hints have been quiet for ``debounce``
  seconds (``only_paths``, no remote listing: the per-batch cost stays tiny), plus the
  paths whose per-file backoff has run out, and the delayed deletes (``delete_delay``)
  that came due;
- a **vector store step** (``engine.vector_pass``: no scan) when the store's next poll,
  deadline or retry is due (``VectorSync.next_due``), so indexing is waited for by the
  schedule, never inside a pass;
- a **full pass** once an operator approved refused deletes (``syncd approve-deletes``):
  while a refusal waits, the ledger is asked every ``APPROVAL_POLL_SECONDS`` (one
  indexed query; nothing is polled otherwise).

Hints go to the aggregator at once and to the ledger's ``dirty`` table at the next step
(one transaction per batch, not one fsync per event). Hints not yet written when the
process dies are not lost either: every start begins with a full pass.

Safety (``syncd.daemon.folder_guard``): before every pass the folder itself is checked.
Gone, on another filesystem than the one recorded in the ledger, or empty (and another
directory than before) while the ledger tracks files: that is an unmounted disk or a
renamed folder, not "every file deleted". The runner pauses (no pass, so no delete),
says why, polls the folder every ``FOLDER_POLL_SECONDS`` and resumes with a new watcher
and a full pass.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import structlog

from syncd.config import MirrorConfig
from syncd.daemon.folder_guard import folder_problem
from syncd.daemon.keepalive import Heartbeat
from syncd.daemon.observer import DaemonObserver
from syncd.daemon.status import MirrorStatus
from syncd.errors import FatalError, FolderUnavailableError, SyncdError
from syncd.local.fingerprint import Identity, folder_identity, folder_is_empty
from syncd.local.ignorefile import ignore_hint
from syncd.local.scan import ScanResult
from syncd.local.watch.aggregator import is_subtree_hint
from syncd.local.watch.watcher import FolderWatcher
from syncd.remote.protocol import FilesRemote
from syncd.state.deletes import Refusal, RefusalState
from syncd.state.ledger import META_FOLDER, ErrorKind, Ledger
from syncd.sync.engine import SyncEngine
from syncd.sync.plan import Action, Plan
from syncd.sync.progress import LogReporter, ProgressReporter
from syncd.sync.queue import DirtyQueue
from syncd.sync.result import Outcome, PassResult
from syncd.sync.vector_report import VectorReport

log = structlog.get_logger(__name__)

FOLDER_POLL_SECONDS = 2.0
DEFER_LIMIT_SECONDS = 600.0
ERROR_RETRY_SECONDS = 60.0
APPROVAL_POLL_SECONDS = 1.0
META_DEVICE = "folder_device"
META_INODE = "folder_inode"


class _RunnerReporter(LogReporter):
    """The engine's per-action log lines, plus liveness and a prompt stop.

    With ``progress`` (a terminal): a pass that runs long shows a progress bar instead
    of a line per file (the lines of its first ``DELAY_SECONDS`` still come; quick passes
    have only lines).
    """

    def __init__(
        self,
        heartbeat: Heartbeat,
        stopping: threading.Event,
        progress: ProgressReporter | None = None,
        on_progress: Callable[[], None] | None = None,
        observer: DaemonObserver | None = None,
        folder: str = "",
    ) -> None:
        self._heartbeat = heartbeat
        self._stopping = stopping
        self._progress = progress
        self._on_progress = on_progress
        self._observer = observer
        self._folder = folder
        self.engine: SyncEngine | None = None

    def pass_started(self, plan: Plan, scan: ScanResult) -> None:
        self._heartbeat.beat()
        if self._stopping.is_set() and self.engine is not None:
            self.engine.request_stop()  # a stop that came while scanning: run no action
        super().pass_started(plan, scan)
        if self._progress is not None:
            self._progress.pass_started(plan, scan)

    def action_started(self, action: Action) -> None:
        self._heartbeat.beat()

    def action_finished(self, outcome: Outcome) -> None:
        self._heartbeat.beat()
        if self._observer is not None:
            self._observer.action_finished(self._folder, outcome)
        if self._progress is None or not self._progress.shown:
            super().action_finished(outcome)
        if self._progress is not None:
            self._progress.action_finished(outcome)
        if self._on_progress is not None:
            self._on_progress()

    def pass_finished(self, result: PassResult) -> None:
        if self._progress is not None:
            self._progress.pass_finished(result)


class MirrorRunner:
    """Schedules the passes of one mirror (see the module docstring); owns ``ledger``
    from now on (closes it in :meth:`close`)."""

    def __init__(
        self,
        config: MirrorConfig,
        ledger: Ledger,
        remote: FilesRemote,
        *,
        wake: Callable[[float], None],
        heartbeat: Heartbeat,
        stopping: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        watch: bool = True,
        progress: ProgressReporter | None = None,
        on_progress: Callable[[], None] | None = None,
        observer: DaemonObserver | None = None,
        on_status: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self._on_status = on_status
        self.watch = watch  # False: no watcher, changes are found by the rescans only
        # The mirror's path filter already excludes these, so the scanner skips what the
        # watcher ignores and a temp file is never uploaded.
        self.ignore = config.ignore_globs
        self.mirror = config
        self.folder = self.mirror.folder
        self.log = log.bind(folder=str(self.folder))  # every line of this mirror names it
        self.ledger = ledger
        self._wake = wake
        self._clock = clock
        self._stopping = stopping
        self._observer = observer
        self._reporter = _RunnerReporter(
            heartbeat, stopping, progress, on_progress, observer, folder=str(self.folder)
        )
        self.engine = self._make_engine(remote)
        self.queue = DirtyQueue(ledger, config.debounce, clock=clock)
        self.watcher: FolderWatcher | None = None
        self.paused: str | None = None
        self.refusal: str | None = None
        self._root_gone = threading.Event()
        self._full_due = clock()
        self._watcher_started = -math.inf
        self._next_folder_check = 0.0
        self._retry_at: dict[str, float] = {}  # path -> unix time its backoff ends
        self._delete_due: dict[str, float] = {}  # path -> unix time its delayed delete is due
        self._refusal: Refusal | None = None  # the ledger's refusal waiting for an approval
        self._next_approval_check = 0.0
        self._deferred: dict[str, float] = {}  # path -> when it was first found changing
        self._status = MirrorStatus(str(self.folder), 0, 0, 0)
        self._recorded = self._recorded_identity()

    # -- life cycle ----------------------------------------------------------------------

    def _make_engine(self, remote: FilesRemote) -> SyncEngine:
        engine = SyncEngine(
            self.mirror,
            self.ledger,
            remote,
            reporter=self._reporter,
            guard_window=self.config.rescan_interval,  # a mass delete spread over passes
        )
        self._reporter.engine = engine
        return engine

    def rebind(self, remote: FilesRemote) -> None:
        """Use another remote (a new key) from the next pass on."""
        self.engine = self._make_engine(remote)

    def prepare(self, *, accept_folder_change: bool = False, create_folder: bool = False) -> None:
        """Record or check the folder's identity; with ``create_folder``, create a missing
        folder nothing was mirrored from (else a missing folder pauses the mirror)."""
        if create_folder and not self.folder.exists() and self._never_seen():
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.log.info("folder_created")
            except OSError as exc:
                self.log.error("folder_create_failed", error=str(exc))
        if accept_folder_change:
            identity = folder_identity(self.folder)
            if identity is not None:
                self._record(identity)
                self.log.warning("folder_change_accepted")
        self.ledger.set_meta(META_FOLDER, str(self.folder))
        self.queue.restore()  # what a crash left queued is looked at again
        self._refresh_status()
        problem = self._folder_problem()
        if problem:
            self._pause(problem)
        else:
            self.start_watching()

    def start_watching(self) -> None:
        """A new watcher (one only starts once). Started before the pass it precedes, so
        that changes made during that pass are hinted."""
        self.stop_watching()
        self._root_gone.clear()
        self._watcher_started = self._clock()
        if not self.watch:
            return
        self.watcher = FolderWatcher(
            self.folder,
            self._on_hint,
            ignore_globs=self.ignore,
            on_trouble=self._on_trouble,
            on_root_gone=self._on_root_gone,
            state_dir=self.ledger.path.parent,
        )
        self.watcher.start()

    def _watcher_needs_restart(self, now: float) -> bool:
        """A dead watcher is restarted at most once per rescan interval: one that fails
        at start reports trouble, and trouble asks for a full pass, which must not loop."""
        if self._stopping.is_set() or (self.watcher is not None and self.watcher.alive):
            return False
        return now - self._watcher_started >= self.config.rescan_interval

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    def request_stop(self) -> None:
        self.engine.request_stop()

    def close(self) -> None:
        self.stop_watching()
        self.ledger.close()

    # -- callbacks from the watcher's threads -------------------------------------------

    def _on_hint(self, hint: str) -> None:
        rules = ignore_hint(hint)
        if rules == "":  # the root's .syncdignore changed: every path may be in or out
            self.queue.request_rescan()
            self._wake(0.0)
            return
        self._wake(self.queue.hint(hint if rules is None else rules))

    def _on_trouble(self, reason: str) -> None:
        self.log.warning("full_rescan_requested", reason=reason)
        self.queue.request_rescan()
        self._wake(0.0)

    def _on_root_gone(self) -> None:
        self._root_gone.set()
        self._wake(0.0)

    # -- scheduling ----------------------------------------------------------------------

    def request_full(self) -> None:
        self._full_due = self._clock()

    def flush_hints(self) -> None:
        """Write the hints noted since the last step to the durable queue."""
        self.queue.flush()

    def due_in(self, now: float) -> float | None:
        """Seconds until :meth:`step` has work (0: now), None if only a hint can wake it."""
        if self._root_gone.is_set():
            return 0.0
        if self.paused:
            return max(0.0, self._next_folder_check - now)
        waits = [self._full_due - now]
        hint_due = self.queue.next_due(now)
        if hint_due is not None:
            waits.append(hint_due)
        if self._retry_at:
            waits.append(min(self._retry_at.values()) - time.time())
        vector_due = self.engine.vectors.next_due() if self.engine.vectors else None
        if vector_due is not None:  # a poll, a deadline or a retry of the vector store
            waits.append(vector_due - time.time())
        if self._delete_due:
            waits.append(min(self._delete_due.values()) - time.time())
        if self._refusal is not None and self._refusal.state == RefusalState.OPEN:
            waits.append(self._next_approval_check - now)
        return max(0.0, min(waits))

    def step(self) -> PassResult | None:
        """Run at most one pass that is due; None when there was nothing to run."""
        now = self._clock()
        if self._root_gone.is_set() or self.paused:
            if not self._root_gone.is_set() and now < self._next_folder_check:
                return None
            if not self._check_back(now):
                return None
        if self.queue.take_rescan():
            self._full_due = now
        if now >= self._full_due:
            return self._pass(None)
        if self._check_approval(now):
            return self._pass(None)  # a full pass: it also clears what the refusal queued
        paths = self._settled(self.queue.ready(now), now)
        wall = time.time()
        retry = {path for path, at in self._retry_at.items() if at <= wall}
        for path in retry:
            del self._retry_at[path]
        due = {path for path, at in self._delete_due.items() if at <= wall}
        for path in due:
            del self._delete_due[path]
        if paths or retry or due:
            return self._pass(paths | retry | due)
        return self._vector_step()

    def _vector_step(self) -> PassResult | None:
        """Advance the vector store when its next step is due (polls, deadlines,
        retries); no scan, no Files pass. None when nothing is due."""
        vectors = self.engine.vectors
        due = vectors.next_due() if vectors is not None else None
        if due is None or due > time.time():
            return None
        with structlog.contextvars.bound_contextvars(folder=str(self.folder)):
            result = self.engine.vector_pass()
        if result is not None and result.vectors is not None:
            self._log_vectors(result.vectors)
        return result

    def _log_vectors(self, report: VectorReport) -> None:
        """One line when the store changed (or could not be kept), at debug otherwise."""
        busy = report.attached or report.retired or report.updated or report.errors
        (self.log.info if busy else self.log.debug)(
            "vector_store_step",
            store=report.store_id or report.store,
            completed=report.completed,
            in_progress=report.in_progress,
            failed=report.failed,
            attached=report.attached,
            updated=report.updated,
            retired=report.retired,
            waiting=report.waiting,
            errors=report.errors or None,
        )
        for warning in report.warnings:
            self.log.debug("vector_store_warning", warning=warning)

    def _check_approval(self, now: float) -> bool:
        """While a refusal waits: has an operator approved it (then say so)?"""
        refusal = self._refusal
        if refusal is None or refusal.state != RefusalState.OPEN:
            return False
        if now < self._next_approval_check:
            return False
        self._next_approval_check = now + APPROVAL_POLL_SECONDS
        found = self.ledger.pending_refusal()
        if found is None or found.id != refusal.id or found.state != RefusalState.APPROVED:
            return False
        self._refusal = found
        self.log.warning(
            "deletes_approved",
            refusal=found.id,
            deletes=len(found.copies),
            approved_by=found.approved_by,
            action=f"deleting the {len(found.copies)} refused files now (these only)",
        )
        self.refusal = None
        self._refresh_status()
        self._on_status()  # STATUS= says so before the deletes start
        return True

    def _settled(self, paths: list[str], now: float) -> set[str]:
        """The quiet paths whose file was not modified within ``debounce`` either.

        The aggregator releases a path that never goes quiet after its ``max_delay``; a
        file whose mtime is that young is still being written, so it is noted again
        rather than uploaded half-way, for at most ``DEFER_LIMIT_SECONDS`` (a file
        appended to forever is still mirrored now and then). One lstat per path.
        """
        settled: set[str] = set()
        wall = time.time()
        for path in paths:
            if not is_subtree_hint(path):
                try:
                    age = wall - (self.folder / path).lstat().st_mtime
                except OSError:
                    age = math.inf
                if 0 <= age < self.queue.debounce:
                    first = self._deferred.setdefault(path, now)
                    if now - first < DEFER_LIMIT_SECONDS:
                        self.queue.note(path, now)
                        continue
            self._deferred.pop(path, None)
            settled.add(path)
        return settled

    def _check_back(self, now: float) -> bool:
        """After a pause or a root-gone report: resume (True) if the folder is fine."""
        self._root_gone.clear()
        problem = self._folder_problem()
        if problem:
            self._pause(problem)
            self._next_folder_check = now + FOLDER_POLL_SECONDS
            return False
        if self.paused:
            self.log.info("resumed", reason="the folder is back")
            self.paused = None
            self._refresh_status()
        if self.watcher is None or not self.watcher.alive:
            self.start_watching()
        self._full_due = now
        return True

    def _pause(self, problem: str) -> None:
        self.stop_watching()
        if problem != self.paused:
            self.log.warning("paused", reason=problem)
        self.paused = problem
        self._refresh_status()

    # -- one pass ------------------------------------------------------------------------

    def _pass(self, hints: set[str] | None) -> PassResult | None:
        now = self._clock()
        problem = self._folder_problem()
        if problem:
            self._pause(problem)
            self._next_folder_check = now + FOLDER_POLL_SECONDS
            return None
        full = hints is None
        if full and self._watcher_needs_restart(now):
            self.start_watching()  # a watcher that died (or could not start) gets another go
        only = None if hints is None else sorted({h.rstrip("/") for h in hints})
        self.flush_hints()
        started = time.time()
        try:
            # The engine's per-action lines come from this thread: they name the folder.
            with structlog.contextvars.bound_contextvars(folder=str(self.folder)):
                result = self.engine.run_pass(only, check_remote=None if full else False)
        except FatalError as exc:
            result = PassResult(started_at=started, finished_at=time.time())
            result.stop_fatal(str(exc), exc.cause)
        except FolderUnavailableError as exc:
            self._pause(str(exc))
            self._next_folder_check = now + FOLDER_POLL_SECONDS
            return None
        except SyncdError as exc:
            self.log.error("pass_failed", error=str(exc))
            self._full_due = now + ERROR_RETRY_SECONDS
            return None
        self.queue.settle(result, hints, retry_unfinished=not self._stopping.is_set())
        if full and not result.fatal:
            self._full_due = now + self.config.rescan_interval
        elif full:
            self._full_due = now  # after the key is fixed, start with a full pass
        self._log_pass(result, only)
        if result.vectors is not None:
            self._log_vectors(result.vectors)
        self._refresh_status(handled=set(only or ()))
        if self._observer is not None:
            self._observer.pass_finished(str(self.folder), "full" if full else "changes", result)
        return result

    def _log_pass(self, result: PassResult, only: list[str] | None) -> None:
        for problem in result.problems:
            level = self.log.warning if problem.error else self.log.debug
            level("scan_problem", path=problem.path, reason=problem.reason)
        for warning in result.warnings:
            self.log.warning("pass_warning", warning=warning)
        if result.refusal and result.refusal != self.refusal:
            self.log.warning("deletes_refused", reason=result.refusal)
        self.refusal = result.refusal
        for refusal in result.approvals_applied:
            self.log.warning(
                "approved_deletes_applied",
                refusal=refusal.id,
                deletes=refusal.deletes,
                approved_by=refusal.approved_by,
            )
        busy = bool(result.counts or result.failures or result.requeued)
        (self.log.info if busy or only is None else self.log.debug)(
            "pass_finished",
            kind="full" if only is None else "changes",
            paths=None if only is None else len(only),
            result=result.verdict,
            counts=result.counts,
            failed=len(result.failures),
            requeued=len(result.requeued),
            duration=round(result.finished_at - result.started_at, 3),
        )

    # -- the folder's identity -----------------------------------------------------------

    def _never_seen(self) -> bool:
        """Nothing was ever mirrored from this folder: creating it can hide no unmount."""
        return self.ledger.tracked_count() == 0 and not self.ledger.open_intents()

    def _recorded_identity(self) -> Identity | None:
        device, inode = self.ledger.get_meta(META_DEVICE), self.ledger.get_meta(META_INODE)
        if device is None or inode is None:
            return None
        return int(device), int(inode)

    def _record(self, identity: Identity) -> None:
        self.ledger.set_meta(META_DEVICE, str(identity[0]))
        self.ledger.set_meta(META_INODE, str(identity[1]))
        self._recorded = identity

    def _folder_problem(self) -> str | None:
        """Check the folder before a pass (a stat, a directory read and a count at most)."""
        identity = folder_identity(self.folder)
        if identity is not None and identity == self._recorded:
            return None  # the common case: the same directory as last time
        empty = identity is not None and folder_is_empty(self.folder)
        tracked = self.ledger.tracked_count() if identity is not None else 0
        problem = folder_problem(
            str(self.folder), identity, self._recorded, empty=empty, tracked=tracked
        )
        if problem is None and identity is not None:
            self._record(identity)
        return problem

    # -- status --------------------------------------------------------------------------

    def _refresh_status(self, handled: set[str] | None = None) -> None:
        """Counts for the status line, and when each retryable failure is due again.

        A path this pass just handled whose backoff is still over (the planner skipped
        it for another reason, e.g. it is now excluded) is left to the periodic rescan,
        so that it cannot make the loop spin.
        """
        status = self.ledger.status()
        wall = time.time()
        self._retry_at = {
            row.path: row.next_attempt_at
            for row in status.problem_rows
            if row.error_kind == ErrorKind.RETRYABLE
            and row.next_attempt_at is not None
            and (row.next_attempt_at > wall or row.path not in (handled or ()))
        }
        waits = [at - wall for at in self._retry_at.values()]
        pending = self.ledger.pending_deletes()
        # A due delete this pass could not carry out (refused, held back) waits for the
        # next full pass rather than making the loop spin.
        self._delete_due = {
            path: p.due_at
            for path, p in pending.items()
            if p.due_at > wall or path not in (handled or ())
        }
        self._refusal = self.ledger.pending_refusal()
        self._status = MirrorStatus(
            folder=str(self.folder),
            mirrored=status.mirrored,
            pending=status.pending,
            failed=status.failed,
            retrying=status.retrying,
            next_retry_in=min(waits) if waits else None,
            paused=self.paused,
            refusal=self._refusal_text(),
            queued=status.queued,
            delayed=len(pending),
            next_delete_in=min((p.due_at for p in pending.values()), default=wall) - wall
            if pending
            else None,
        )

    def _refusal_text(self) -> str | None:
        """What STATUS= says of a refusal: its message, or that approved ones are going."""
        refusal = self._refusal
        if refusal is None:
            return None
        if refusal.state == RefusalState.APPROVED:
            return (
                f"deleting {len(refusal.copies)} refused files, approved by "
                f"{refusal.approved_by or 'an operator'}"
            )
        return refusal.message

    def status(self) -> MirrorStatus:
        return self._status
