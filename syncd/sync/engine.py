"""The engine: one pass = settle open intents, scan, plan, carry the plan out, record it.

``SyncEngine.run_pass`` is what both ``syncd sync`` and the daemon call. Execution rules:

- Uploads and replaces run first on worker threads, each one action with its intent
  (``syncd.sync.transfer``); how many at once is ``mirror.concurrency`` when it is fixed,
  else found from the answers (``syncd.sync.concurrency``: ``Slots``, ``AdaptiveLimit``).
  A replace deletes the old version right after the new one is committed (the delete
  intent is part of that commit, so a crash cannot orphan it).
- ``AmbiguousError`` (the answer was lost): once the transfers are done, all ambiguous
  intents of the pass are reconciled with one listing per purpose; paths for which no
  copy could be adopted are tried again (at most ``AMBIGUOUS_ROUNDS`` times).
- While uploads are in flight a ``Heartbeat`` records signs of life in the ledger (the
  end of a crashed upload's window); the server's clock offset (``ServerClock``) is
  measured from answers and uploads and kept in the ledger after each pass.
- A full pass's remote listing is also swept for late copies of uploads reconciled as
  not stored (``Reconciler.sweep_late_copies``), except in a dry run.
- Deletes run last, and not when a guard refused, nor when the folder changed identity
  during the pass. While a file is failing, the deletes of its content wait
  (``syncd.sync.holds``). The guard's window, approved deletes and delayed deletes are
  ``syncd.sync.delete_control``'s.
- ``FatalError`` (bad key, wrong base URL, a full pass's listing failing) stops new
  work; in-flight actions finish; deletes are skipped; no file is marked failed.
- ``request_stop`` (Ctrl-C, SIGTERM) stops new requests at once: actions not started are
  ``not_run``, no listing, reconcile, retry round or delete starts; the actions in flight
  get ``stop_grace`` seconds to finish, and those still running then are ``abandoned``
  (their intents are settled by the next pass). The pass is recorded ``interrupted``
  with the counts of what it did.
- ``request_stop`` also ends the remote's waits (pacing, rate-limit pauses, backoffs:
  ``SupportsStop``), so a stop never waits out a long pacing delay; what was waiting is
  ``not_run``. The remote's pacing during the pass is recorded (``PacingRecorder``).
- A mirror with a vector store (``mirror.vector``) advances it after the pass
  (``syncd.sync.vectors``: attach, poll, retire old versions); every File the engine
  deletes is detached from the store first (``DetachFirstRemote``).
- Every per-file error is recorded in the ledger (with backoff) and reported; it never
  stops the other files. What the pass could not finish is reported in the result
  (``requeued``, ``unfinished``); the queue of paths to look at again is not the
  engine's (``syncd.sync.queue``).
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Collection, Sequence

import structlog

from syncd.api import RemoteFile
from syncd.config import MirrorConfig
from syncd.errors import (
    AmbiguousError,
    FatalError,
    RemoteError,
    RetryableError,
    UnreachableError,
    WrongEndpointError,
)
from syncd.local.fingerprint import Identity, folder_identity
from syncd.local.scan import Scanner, ScanResult
from syncd.remote.protocol import FilesRemote, SupportsServerClock, SupportsStop
from syncd.state.ledger import Ledger
from syncd.sync.concurrency import Slots, slots_for
from syncd.sync.delete_control import DeleteControl
from syncd.sync.heartbeat import HEARTBEAT_SECONDS, Heartbeat
from syncd.sync.holds import FailedContent, held_back
from syncd.sync.multipart import multipart_uploader
from syncd.sync.ownership import DEFAULT_TIME_LIMIT
from syncd.sync.pacing_log import PacingRecorder
from syncd.sync.plan import Action, ActionKind, Plan, PlanOptions, Skip, plan
from syncd.sync.reconcile import Reconciler
from syncd.sync.result import (
    NullReporter,
    Outcome,
    OutcomeStatus,
    PassResult,
    Reporter,
)
from syncd.sync.server_clock import ServerClock
from syncd.sync.steps import StepHook, no_step
from syncd.sync.transfer import Transfers
from syncd.sync.vectors import vector_sync_for

AMBIGUOUS_ROUNDS = 3
STOP_GRACE_SECONDS = 5.0  # after a stop request, how long actions in flight may finish
HASH_ATTEMPTS = 3
INTENT_RETENTION_SECONDS = 7 * 86400

log = structlog.get_logger(__name__)


class SyncEngine:
    """Mirrors one folder (``mirror``) to ``remote``, recording everything in ``ledger``."""

    def __init__(
        self,
        mirror: MirrorConfig,
        ledger: Ledger,
        remote: FilesRemote,
        *,
        reporter: Reporter | None = None,
        clock: Callable[[], float] = time.time,
        step_hook: StepHook | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        stop_grace: float = STOP_GRACE_SECONDS,
        guard_window: float = 0.0,
    ) -> None:
        self.mirror = mirror
        self.ledger = ledger
        self.remote = remote
        self.reporter = reporter or NullReporter()
        self.clock = clock
        self.step = step_hook or no_step
        self.scanner = Scanner(
            mirror.folder, mirror.path_filter, follow_links_inside=mirror.follow_links
        )
        self._stop = threading.Event()
        self._last_pass_id: int | None = None
        # The vector store the mirror keeps, if any; every File delete detaches it first.
        self.vectors = vector_sync_for(
            mirror.vector,
            ledger,
            remote,
            clock=clock,
            step=self.step,
            concurrency=mirror.concurrency,
            stop=self._stop,
        )
        deleting = self.vectors.deleting(remote) if self.vectors is not None else remote
        self.server_clock = ServerClock(ledger, remote, clock=clock)
        self.reconciler = Reconciler(ledger, deleting, clock=clock, offset=self.server_clock.offset)
        self.heartbeat = Heartbeat(ledger, clock, heartbeat_seconds)
        time_limit: Callable[[int], float] = (
            remote.request_time_limit
            if isinstance(remote, SupportsServerClock)
            else lambda size: DEFAULT_TIME_LIMIT
        )
        # Large files go through the Uploads API when the remote has it.
        self.multipart = multipart_uploader(
            remote,
            ledger,
            threshold=mirror.multipart_threshold,
            part_size=mirror.part_size,
            max_file_bytes=mirror.limits.max_file_bytes,
            clock=clock,
            step=self.step,
        )
        # A stop request (sticky): no new request from now on, in-flight ones get a grace.
        self.stop_grace = stop_grace
        self._interrupt = threading.Event()
        self._interrupt_lock = threading.Lock()
        # The running pool's queue of finished futures: a stop puts None there to wake it.
        self._finished_queue: queue.SimpleQueue[concurrent.futures.Future[Outcome] | None] | None
        self._finished_queue = None
        self._stop_deadline: float | None = None  # monotonic; set with the stop request
        self._pacing: PacingRecorder | None = None
        self.slots: Slots = slots_for(mirror, remote)
        # The content of this pass's failed uploads: the deletes they concern wait.
        self._failed = FailedContent()
        self.transfers = Transfers(
            mirror,
            ledger,
            deleting,
            self.multipart,
            failed=self._failed,
            server_clock=self.server_clock,
            time_limit=time_limit,
            clock=clock,
            step=self.step,
        )
        self.deletes = DeleteControl(mirror, ledger, clock=clock, guard_window=guard_window)

    def request_stop(self) -> None:
        """Stop: no new request from now on; in-flight actions get ``stop_grace`` seconds.

        Safe from any thread (a signal handler's too), idempotent, and for good: a pass
        that starts later stops at once too. The running pass counts the actions it did
        not start as ``not_run`` and those it stopped waiting for as ``abandoned``, and is
        recorded ``interrupted``.
        """
        with self._interrupt_lock:
            if self._interrupt.is_set():
                return
            self._stop_deadline = time.monotonic() + self.stop_grace
            self._interrupt.set()
            if self._finished_queue is not None:
                self._finished_queue.put(None)  # wakes the pool's loop
        self.slots.interrupt()  # workers waiting for a slot give up
        if isinstance(self.remote, SupportsStop):
            self.remote.interrupt_waits()  # requests waiting to be sent give up

    def wait_for_stop(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a stop request; True if one came."""
        return self._interrupt.wait(timeout)

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._interrupt.is_set()

    # -- the pass ------------------------------------------------------------------------

    def run_pass(
        self,
        only_paths: Collection[str] | None = None,
        *,
        dry_run: bool = False,
        check_remote: bool | None = None,
        retry_waiting: bool = False,
        retry_failed: bool = False,
    ) -> PassResult:
        """One pass over the folder, or over ``only_paths`` (files or directories).

        ``check_remote`` (default: on for full passes) lists the remote files so that a
        tracked file deleted remotely is uploaded again. ``dry_run`` plans and returns
        without any write call and without touching the ledger. ``retry_waiting`` tries
        files whose retry backoff is still running (a one-shot ``syncd sync`` does; the
        daemon's passes honour the backoff); ``retry_failed`` also tries files whose last
        upload failed for good. Raises ``FolderUnavailableError`` when the folder is missing.
        """
        result = PassResult(started_at=self.clock(), dry_run=dry_run)
        self._stop.clear()
        if isinstance(self.remote, SupportsStop) and not self.stopping:
            self.remote.resume_waits()  # a fatal stop of the last pass is not for good
        self._failed.clear()
        self.transfers.new_pass()
        pass_id = None if dry_run else self.ledger.start_pass(now=result.started_at)
        if pass_id is not None:
            self._pacing = PacingRecorder(self.remote, self.ledger, result.started_at)
        self._last_pass_id = pass_id
        try:
            self._run(
                result,
                only_paths,
                dry_run,
                check_remote,
                retry_waiting=retry_waiting,
                retry_failed=retry_failed,
            )
        finally:
            result.interrupted = self.stopping
            result.finished_at = self.clock()
            if self._pacing is not None:
                result.pacing = self._pacing.finish()
                self._pacing = None
            if pass_id is not None:
                self._record_pass(pass_id, result)
                self.server_clock.save()
        self.reporter.pass_finished(result)
        return result

    def _run(
        self,
        result: PassResult,
        only_paths: Collection[str] | None,
        dry_run: bool,
        check_remote: bool | None,
        *,
        retry_waiting: bool,
        retry_failed: bool,
    ) -> None:
        try:
            if not dry_run and not self.stopping:
                self.reconcile_open_intents(result)
            root_identity = folder_identity(self.mirror.folder)
            the_plan, scan = self.make_plan(
                only_paths,
                check_remote,
                result,
                retry_waiting=retry_waiting,
                retry_failed=retry_failed,
                dry_run=dry_run,
            )
        except FatalError as exc:  # key refused, wrong URL, server down: nothing can work
            result.stop_fatal(str(exc), exc.cause)
            return
        result.plan = the_plan
        result.problems = scan.problems
        result.warnings.extend(scan.warnings)
        result.refusal = the_plan.refusal
        result.unfinished |= {a.path for a in the_plan.refused}
        result.unfinished |= {p for p, why in the_plan.skipped if why is Skip.BUSY}
        self._note_still_failing(the_plan, result)
        self.reporter.pass_started(the_plan, scan)
        if not dry_run:
            self._execute(the_plan, result, root_identity)
            if not self.stopping:
                self._sweep_uploads(result)
                self._advance_vectors(result, full=only_paths is None, retry_waiting=retry_waiting)
            self.deletes.after_pass(result, full=only_paths is None)

    def reconcile_open_intents(self, result: PassResult) -> None:
        """Settle intents a crash or a lost answer left open (before planning)."""
        intents = self.ledger.open_intents()
        if intents:
            log.info("reconciling", intents=len(intents))
            result.reconciled = self.reconciler.settle(intents)

    def make_plan(
        self,
        only_paths: Collection[str] | None,
        check_remote: bool | None,
        result: PassResult,
        *,
        retry_waiting: bool = False,
        retry_failed: bool = False,
        dry_run: bool = True,
    ) -> tuple[Plan, ScanResult]:
        """Scan and plan. With the remote listing and not ``dry_run``, late copies of
        uploads reconciled as not stored are deleted first (``sweep_late_copies``)."""
        rows = self.ledger.rows() if only_paths is None else self.ledger.rows_for(only_paths)
        wanted = check_remote if check_remote is not None else only_paths is None
        fetching = None
        if wanted and not self.stopping:
            # The listing is fetched while the folder is walked: the server's time and
            # the walk's overlap. A missing folder still fails before any request.
            self.scanner.check_root()
            fetching = self._fetch_listing()
        try:
            if only_paths is None:
                scan = self.scanner.scan(rows)
            else:
                scan = self.scanner.scan_paths(only_paths, rows)
        finally:
            if fetching is not None:
                concurrent.futures.wait([fetching])  # no request outlives the pass
        listing = None
        if fetching is not None and not self.stopping:  # as before: no listing once stopped
            listing = self._remote_listing(fetching, result, sweep=not dry_run)
        options = PlanOptions(
            default_purpose=self.mirror.purpose,
            expires_after=self.mirror.expires_after,
            rules=self.mirror.rules,
            path_filter=self.mirror.path_filter,
            max_delete=self.mirror.max_delete,
            tracked_total=None if only_paths is None else self.ledger.tracked_count(),
            uncertain=frozenset(scan.uncertain),
            busy=frozenset(i.path for i in self.ledger.open_intents()),
            retry_waiting=retry_waiting,
            retry_failed=retry_failed,
            ignored=scan.ignore,
            **self.deletes.plan_fields(full=only_paths is None),
        )
        return plan(scan.files, rows, listing, now=self.clock(), options=options), scan

    def _fetch_listing(self) -> concurrent.futures.Future[dict[str, RemoteFile]]:
        """Every remote file by id, fetched on a thread of its own (the pass goes on)."""
        fetching: concurrent.futures.Future[dict[str, RemoteFile]] = concurrent.futures.Future()

        def fetch() -> None:
            try:
                fetching.set_result({f.id: f for f in self.remote.list_files()})
            except BaseException as exc:  # handed to the pass, which raises it there
                fetching.set_exception(exc)

        threading.Thread(target=fetch, name="syncd-listing", daemon=True).start()
        return fetching

    def _remote_listing(
        self,
        fetching: concurrent.futures.Future[dict[str, RemoteFile]],
        result: PassResult,
        *,
        sweep: bool,
    ) -> dict[str, RemoteFile]:
        """The listing ``fetching`` got. A listing that fails stops the pass before
        anything is uploaded (``FatalError``): a server that cannot list is down
        (``UnreachableError``) or not a Files API at this URL (``WrongEndpointError``),
        and uploading to it would only record a failure for every file."""
        try:
            listing = fetching.result()
        except FatalError:
            raise
        except (RetryableError, AmbiguousError) as exc:
            raise UnreachableError(
                f"cannot list the remote files ({exc}); nothing was uploaded, try again later"
            ) from exc
        except RemoteError as exc:
            raise WrongEndpointError(
                f"cannot list the remote files ({exc}); is the base URL right?",
                status=exc.status,
            ) from exc
        if sweep:
            swept = self.reconciler.sweep_late_copies(listing.values())
            if swept.duplicates_deleted or swept.errors or swept.kept:
                result.merge_reconcile(swept)
            for file_id in swept.duplicates_deleted:
                listing.pop(file_id, None)
        return listing

    def _note_still_failing(self, the_plan: Plan, result: PassResult) -> None:
        """Files skipped because they failed before still keep the remote unequal."""
        for path, reason in the_plan.skipped:
            if reason in (Skip.FAILED, Skip.BACKOFF):
                row = self.ledger.row(path)
                message = row.last_error if row and row.last_error else reason.value
                result.still_failing.append((path, message, reason is Skip.FAILED))

    def _record_pass(self, pass_id: int, result: PassResult) -> None:
        now = self.clock()
        self.ledger.finish_pass(
            pass_id, result=result.verdict, summary=result.to_json_text(), now=now
        )
        self.ledger.prune_intents(older_than=now - INTENT_RETENTION_SECONDS)

    # -- executing a plan ------------------------------------------------------------------

    def _execute(self, the_plan: Plan, result: PassResult, root_identity: Identity | None) -> None:
        transfers = the_plan.of_kind(ActionKind.UPLOAD, ActionKind.REPLACE)
        if transfers:
            with self.heartbeat:
                self._transfer_rounds(transfers, result)
        for outcome in self.transfers.fix_ledger(
            the_plan.of_kind(ActionKind.REFRESH, ActionKind.FORGET)
        ):
            self._finished(outcome, result)
        for outcome in self.deletes.defer(the_plan):
            self._finished(outcome, result)
        deletes = the_plan.of_kind(ActionKind.DELETE)
        if deletes and folder_identity(self.mirror.folder) != root_identity:
            # The folder was unmounted or swapped while we scanned: what looked deleted
            # may only be out of sight. Deleting on that evidence would be a mass loss.
            result.warnings.append(
                f"folder {self.mirror.folder} changed during the pass (unmounted or "
                f"replaced?): {len(deletes)} deletes held back"
            )
            result.deletes_skipped = len(deletes)
            result.unfinished |= {a.path for a in deletes}
            return
        failing = self._failed.snapshot() | self.ledger.retrying_content()
        held = held_back(deletes, failing, key_refused=bool(result.fatal))
        if held:
            result.deletes_skipped = len(held)
            result.unfinished |= {a.path for a in held}
            waiting = {a.path for a in held}
            deletes = [a for a in deletes if a.path not in waiting]
        self._run_pool(deletes, self.transfers.delete, result)

    def _transfer_rounds(self, transfers: list[Action], result: PassResult) -> None:
        """Uploads and replaces, then reconciling lost answers and uploading again what
        no copy was adopted for, at most ``AMBIGUOUS_ROUNDS`` times."""
        for _ in range(AMBIGUOUS_ROUNDS):
            outcomes = self._run_pool(transfers, self.transfers.transfer, result)
            ambiguous = [o for o in outcomes if o.status is OutcomeStatus.AMBIGUOUS]
            if not ambiguous or result.fatal or self.stopping:
                return  # a stop leaves lost answers to the next pass's reconcile
            transfers = self._settle_ambiguous(ambiguous, result)
            if not transfers:
                return
        for action in transfers:  # lost answers every round: try again next pass
            sent = self.transfers.sent(action.path)
            reason = "the server's answer was lost repeatedly"
            self._finished(self.transfers.fail(action, sent, reason), result)

    def _run_pool(
        self,
        actions: Sequence[Action],
        work: Callable[[Action], Outcome],
        result: PassResult,
    ) -> list[Outcome]:
        """Carry ``actions`` out on the worker threads; collect every outcome here.

        After a stop request the actions not started are cancelled (``not_run``) and the
        ones in flight are waited for until the grace runs out (then ``abandoned``; the
        pool's threads are left to finish on their own).
        """
        if not actions:
            return []
        outcomes: list[Outcome] = []
        if self.stopping:
            for action in actions:
                self._finished(_not_started(action), result, outcomes)
            return outcomes
        self.slots.new_round()
        workers = min(self.slots.width, len(actions))
        pool = concurrent.futures.ThreadPoolExecutor(workers, "syncd-worker")
        # Each future puts itself in ``finished`` when done, and the loop takes them one
        # by one: waiting on the whole pending set at every completion (``futures.wait``)
        # costs a pass of 100,000 files time quadratic in its size.
        finished: queue.SimpleQueue[concurrent.futures.Future[Outcome] | None]
        finished = queue.SimpleQueue()
        with self._interrupt_lock:
            self._finished_queue = finished
            if self._interrupt.is_set():
                finished.put(None)
        futures: dict[concurrent.futures.Future[Outcome], Action] = {}
        for action in actions:
            future = pool.submit(self._guarded, work, action)
            futures[future] = action
            future.add_done_callback(finished.put)
        pending = set(futures)
        abandoned = False
        try:
            while pending:
                deadline = self._stop_deadline
                if deadline is not None:
                    for future in [f for f in pending if f.cancel()]:
                        pending.discard(future)
                        self._finished(_not_started(futures[future]), result, outcomes)
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    done = finished.get(timeout=timeout)
                except queue.Empty:
                    done = None
                if done is not None and done in pending:
                    pending.discard(done)
                    outcome = done.result()
                    self._finished(outcome, result, outcomes)
                    if outcome.status is OutcomeStatus.FATAL:
                        self._stop.set()
                        result.stop_fatal(outcome.reason, outcome.fatal_cause)
                if pending and deadline is not None and time.monotonic() >= deadline:
                    abandoned = True
                    for future in pending:
                        self._finished(_abandoned(futures[future]), result, outcomes)
                    pending.clear()
        finally:
            with self._interrupt_lock:
                self._finished_queue = None
            pool.shutdown(wait=not abandoned, cancel_futures=True)
            log.debug("concurrency", limit=self.slots.limit.current, peak=self.slots.peak)
        return outcomes

    def _guarded(self, work: Callable[[Action], Outcome], action: Action) -> Outcome:
        if self.stopping:
            return _not_started(action)
        if self._stop.is_set():
            return Outcome(action, OutcomeStatus.NOT_RUN, reason="stopped by a fatal error")
        if not self.slots.acquire():
            return _not_started(action)
        started = time.monotonic()
        outcome: Outcome | None = None
        try:
            if self._stop.is_set():  # it came while this worker waited for its slot
                outcome = Outcome(action, OutcomeStatus.NOT_RUN, reason="stopped by a fatal error")
                return outcome
            self.reporter.action_started(action)
            outcome = work(action)
            outcome.duration = time.monotonic() - started
        finally:
            self.slots.release(time.monotonic() - started, outcome)
        if outcome.status is OutcomeStatus.FATAL:
            self._stop.set()  # here, before this worker takes the next action
        return outcome

    def _settle_ambiguous(self, ambiguous: list[Outcome], result: PassResult) -> list[Action]:
        """Reconcile lost answers; return the actions whose upload stored nothing."""
        open_ids = {o.intent_id for o in ambiguous}
        intents = [i for i in self.ledger.open_intents() if i.id in open_ids]
        try:
            report = self.reconciler.settle(intents)
        except FatalError as exc:
            result.stop_fatal(str(exc), exc.cause)
            return []
        result.merge_reconcile(report)
        for outcome in ambiguous:
            if outcome.action.path in report.adopted:
                done = Outcome(
                    outcome.action,
                    OutcomeStatus.DONE,
                    file_id=report.adopted[outcome.action.path],
                    bytes=outcome.bytes,
                    reason="adopted after a lost answer",
                )
                self._finished(done, result)
        retry = set(report.not_stored)
        return [o.action for o in ambiguous if o.action.path in retry]

    def _sweep_uploads(self, result: PassResult) -> None:
        """Cancel and forget large-file uploads that can no longer be resumed."""
        if self.multipart is None or result.fatal:
            return
        try:
            self.multipart.sweep(
                self.mirror.folder, self.ledger.row, follow_links=self.mirror.follow_links
            )
        except FatalError as exc:
            result.stop_fatal(str(exc), exc.cause)

    # -- the vector store -------------------------------------------------------------

    def vector_pass(self, *, retry_waiting: bool = False) -> PassResult | None:
        """One vector store step without a Files pass (polls, deadlines, retries, as
        ``vectors.next_due()`` says); None when the mirror keeps no store."""
        if self.vectors is None or self.stopping:
            return None
        self._stop.clear()
        result = PassResult(started_at=self.clock())
        self._advance_vectors(result, full=False, retry_waiting=retry_waiting)
        result.finished_at = self.clock()
        return result

    def amend_last_pass(self, result: PassResult) -> None:
        """Record ``result`` as how the last pass ended: ``syncd sync`` does, once it has
        waited for the vector store's indexing (``syncd status`` then shows that)."""
        if self._last_pass_id is not None:
            self._record_pass(self._last_pass_id, result)

    def _advance_vectors(self, result: PassResult, *, full: bool, retry_waiting: bool) -> None:
        if self.vectors is None or result.fatal:
            return
        try:
            result.vectors = self.vectors.run(full=full, retry_waiting=retry_waiting)
        except FatalError as exc:
            result.fatal = str(exc)

    def _finished(
        self, outcome: Outcome, result: PassResult, outcomes: list[Outcome] | None = None
    ) -> None:
        if outcomes is not None:
            outcomes.append(outcome)
        result.add(outcome)
        self.deletes.deleted(outcome)
        self.reporter.action_finished(outcome)
        if self._pacing is not None:
            self._pacing.note()  # at most every few seconds, it writes the pacing state


def _not_started(action: Action) -> Outcome:
    return Outcome(action, OutcomeStatus.NOT_RUN, reason="stopped before it started")


def _abandoned(action: Action) -> Outcome:
    return Outcome(
        action,
        OutcomeStatus.ABANDONED,
        reason="still in flight when the stop's grace ran out; settled by the next pass",
    )
