"""The engine: one pass = settle open intents, scan, plan, carry the plan out, record it.

``SyncEngine.run_pass`` is what both ``syncd sync`` and the daemon call. Execution rules:

- Uploads and replaces run first on ``concurrency`` worker threads. Each worker stats the
  file again, hashes it if its stat moved since the scan, validates it, commits an upload
  intent, uploads, stats again and commits the outcome (``Ledger.complete_upload``). A
  file that changed while it was uploaded is recorded without a hash and queued again.
- A replace deletes the old version right after the new one is committed (the delete
  intent is part of that commit, so a crash cannot orphan it).
- ``AmbiguousError`` (the answer was lost): once the transfers are done, all ambiguous
  intents of the pass are reconciled with one listing per purpose; paths whose upload
  provably stored nothing are tried again (at most ``AMBIGUOUS_ROUNDS`` times).
- A full pass's remote listing is also swept for late copies of uploads reconciled as
  not stored (``Reconciler.sweep_late_copies``), except in a dry run.
- Deletes run last, and not when a guard refused. While a file is failing (in this
  pass, or waiting to retry), the deletes of its content wait: a rename or a copy whose
  upload fails must not lose its only remote copy. All deletes wait when the key
  was refused or a failing file's content is unknown (``_held_back``); the others go
  ahead, so that under steady faults deletes do not starve.
- ``FatalError`` (bad key) stops new work; in-flight actions finish; deletes are skipped.
- Every per-file error is recorded in the ledger (with backoff) and reported; it never
  stops the other files.
"""

from __future__ import annotations

import concurrent.futures
import os
import stat
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import structlog

from syncd.api import JSONL_PURPOSES, RemoteFile
from syncd.config import MirrorConfig
from syncd.errors import (
    AmbiguousError,
    FatalError,
    FileChangedError,
    RemoteError,
    Verdict,
)
from syncd.local.fingerprint import Fingerprint, Identity, folder_identity
from syncd.local.scan import Scanner, ScanResult, current_fingerprint
from syncd.local.validate import check_jsonl, check_name, check_size
from syncd.remote.protocol import FilesRemote
from syncd.state.ledger import Ledger, LedgerRow
from syncd.sync.multipart import MultipartJob, multipart_uploader
from syncd.sync.plan import Action, ActionKind, Plan, PlanOptions, Skip, plan
from syncd.sync.reconcile import Reconciler
from syncd.sync.result import (
    NullReporter,
    Outcome,
    OutcomeStatus,
    PassResult,
    Reporter,
)
from syncd.sync.steps import StepHook, no_step

AMBIGUOUS_ROUNDS = 3
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
        self.reconciler = Reconciler(ledger, remote, clock=clock)
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
        self._stop = threading.Event()
        # This pass's uploads: what each sent, and the content (SHA-256, size) of each
        # failure, so that only the deletes a failure concerns wait (``_held_back``).
        self._pass_lock = threading.Lock()
        self._sent: dict[str, Fingerprint] = {}
        self._failed_content: set[tuple[str | None, int | None]] = set()

    def request_stop(self) -> None:
        """Ask the running pass to start no new action (in-flight ones finish).

        Safe from any thread (a signal handler's too). The actions not started are
        counted as ``not_run`` and the pass is not ``in_sync``. The next ``run_pass``
        starts afresh.
        """
        self._stop.set()

    # -- the pass ------------------------------------------------------------------------

    def run_pass(
        self,
        only_paths: Collection[str] | None = None,
        *,
        dry_run: bool = False,
        check_remote: bool | None = None,
        retry_waiting: bool = False,
    ) -> PassResult:
        """One pass over the folder, or over ``only_paths`` (files or directories).

        ``check_remote`` (default: on for full passes) lists the remote files so that a
        tracked file deleted remotely is uploaded again. ``dry_run`` plans and returns
        without any write call and without touching the ledger. ``retry_waiting`` tries
        files whose retry backoff is still running (a one-shot ``syncd sync`` does; the
        daemon's passes honour the backoff). Raises ``FolderUnavailableError`` when the
        folder is missing.
        """
        result = PassResult(started_at=self.clock(), dry_run=dry_run)
        self._stop.clear()
        with self._pass_lock:
            self._sent.clear()
            self._failed_content.clear()
        pass_id = None if dry_run else self.ledger.start_pass(now=result.started_at)
        try:
            self._run(result, only_paths, dry_run, check_remote, retry_waiting)
        finally:
            result.finished_at = self.clock()
            if pass_id is not None:
                self._record_pass(pass_id, result, only_paths)
        self.reporter.pass_finished(result)
        return result

    def _run(
        self,
        result: PassResult,
        only_paths: Collection[str] | None,
        dry_run: bool,
        check_remote: bool | None,
        retry_waiting: bool = False,
    ) -> None:
        try:
            if not dry_run:
                self.reconcile_open_intents(result)
            root_identity = folder_identity(self.mirror.folder)
            the_plan, scan = self.make_plan(
                only_paths, check_remote, result, retry_waiting=retry_waiting, dry_run=dry_run
            )
        except FatalError as exc:  # the key is refused: nothing else can work
            result.fatal = str(exc)
            return
        result.plan = the_plan
        result.problems = scan.problems
        result.refusal = the_plan.refusal
        result.unfinished |= {a.path for a in the_plan.refused}
        result.unfinished |= {p for p, why in the_plan.skipped if why is Skip.BUSY}
        self._note_still_failing(the_plan, result)
        self.reporter.pass_started(the_plan, scan)
        if not dry_run:
            self._execute(the_plan, result, root_identity)
            self._sweep_uploads(result)

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
        dry_run: bool = True,
    ) -> tuple[Plan, ScanResult]:
        """Scan and plan. With the remote listing and not ``dry_run``, late copies of
        uploads reconciled as not stored are deleted first (``sweep_late_copies``)."""
        if only_paths is None:
            rows = self.ledger.rows()
            scan = self.scanner.scan(rows)
        else:
            rows = self.ledger.rows_for(only_paths)
            scan = self.scanner.scan_paths(only_paths, rows)
        listing = None
        if check_remote if check_remote is not None else only_paths is None:
            listing = self._remote_listing(result, sweep=not dry_run)
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
        )
        return plan(scan.files, rows, listing, now=self.clock(), options=options), scan

    def _remote_listing(self, result: PassResult, *, sweep: bool) -> dict[str, RemoteFile] | None:
        try:
            listing = {f.id: f for f in self.remote.list_files()}
        except FatalError:
            raise
        except RemoteError as exc:
            result.warnings.append(f"cannot list remote files ({exc}); planning without it")
            return None
        if sweep:
            swept = self.reconciler.sweep_late_copies(listing.values())
            if swept.duplicates_deleted or swept.errors:
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

    def _record_pass(
        self, pass_id: int, result: PassResult, only_paths: Collection[str] | None
    ) -> None:
        if result.plan is not None and not result.dry_run:
            handled = set(only_paths if only_paths is not None else self.ledger.dirty_paths())
            keep = result.requeued | result.unfinished
            self.ledger.clear_dirty(handled - keep, queued_before=result.started_at)
        now = self.clock()
        self.ledger.finish_pass(
            pass_id, result=result.verdict, summary=result.to_json_text(), now=now
        )
        self.ledger.prune_intents(older_than=now - INTENT_RETENTION_SECONDS)

    # -- executing a plan ------------------------------------------------------------------

    def _execute(self, the_plan: Plan, result: PassResult, root_identity: Identity | None) -> None:
        transfers = the_plan.of_kind(ActionKind.UPLOAD, ActionKind.REPLACE)
        for _ in range(AMBIGUOUS_ROUNDS):
            outcomes = self._run_pool(transfers, self._transfer, result)
            ambiguous = [o for o in outcomes if o.status is OutcomeStatus.AMBIGUOUS]
            if not ambiguous or result.fatal:
                break
            transfers = self._settle_ambiguous(ambiguous, result)
            if not transfers:
                break
        else:
            for action in transfers:  # lost answers every round: try again next pass
                sent = self._sent.get(action.path)
                self._fail(action, sent, "the server's answer was lost repeatedly", result)
        for action in the_plan.of_kind(ActionKind.REFRESH, ActionKind.FORGET):
            self._fix_ledger(action, result)
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
        held = self._held_back(deletes, result)
        if held:
            result.deletes_skipped = len(held)
            result.unfinished |= {a.path for a in held}
            waiting = {a.path for a in held}
            deletes = [a for a in deletes if a.path not in waiting]
        self._run_pool(deletes, self._delete, result)

    def _held_back(self, deletes: list[Action], result: PassResult) -> list[Action]:
        """The deletes that wait because a file is failing (in this pass, or since before).

        A delete must not remove the only remote copy of content that lives on locally
        under another path whose upload fails (a rename, a copy). So a delete waits when
        a failing file -- one that failed in this pass, or one waiting to retry -- has its
        mirrored content (same SHA-256; or, the failing content's hash being unknown, the
        same size); every delete waits when the key was refused or a failing file is not
        even known by its size. A permanent failure holds deletes back only in the pass
        it happens (it will not be retried until the file changes). Other deletes go
        ahead, so that under steady faults deletes do not starve.
        """
        if not deletes:
            return []
        with self._pass_lock:
            failing = self._failed_content | self.ledger.retrying_content()
        if result.fatal or (None, None) in failing:
            return list(deletes)
        hashes = {sha for sha, _ in failing if sha is not None}
        sizes_unhashed = {size for sha, size in failing if sha is None}
        sizes = {size for _, size in failing}

        def waits(action: Action) -> bool:
            row = action.row
            if row is None:
                return True
            if row.sha256 is None:  # the mirrored content is in doubt: match by size
                return row.size in sizes
            return row.sha256 in hashes or row.size in sizes_unhashed

        return [a for a in deletes if waits(a)]

    def _run_pool(
        self,
        actions: Sequence[Action],
        work: Callable[[Action], Outcome],
        result: PassResult,
    ) -> list[Outcome]:
        if not actions:
            return []
        outcomes: list[Outcome] = []
        workers = min(self.mirror.concurrency, len(actions))
        with concurrent.futures.ThreadPoolExecutor(workers, "syncd-worker") as pool:
            futures = {pool.submit(self._guarded, work, a): a for a in actions}
            for future in concurrent.futures.as_completed(futures):
                outcome = future.result()
                outcomes.append(outcome)
                result.add(outcome)
                if outcome.status is OutcomeStatus.FATAL:
                    self._stop.set()
                    result.fatal = result.fatal or outcome.reason
                self.reporter.action_finished(outcome)
        return outcomes

    def _guarded(self, work: Callable[[Action], Outcome], action: Action) -> Outcome:
        if self._stop.is_set():
            return Outcome(action, OutcomeStatus.NOT_RUN, reason="stopped by a fatal error")
        self.reporter.action_started(action)
        started = time.monotonic()
        outcome = work(action)
        outcome.duration = time.monotonic() - started
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
            result.fatal = str(exc)
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
                result.add(done)
                self.reporter.action_finished(done)
        retry = set(report.not_stored)
        return [o.action for o in ambiguous if o.action.path in retry]

    # -- one action ----------------------------------------------------------------------

    def _transfer(self, action: Action) -> Outcome:
        """Upload (or replace) one file; see the module docstring for the steps."""
        full = self.mirror.folder / action.path
        purpose = action.purpose or self.mirror.purpose
        st = self._stat(full)
        if st is None:
            self._requeue(action.path)
            return Outcome(action, OutcomeStatus.VANISHED, reason="vanished before upload")
        stat_fp = Fingerprint(st.st_size, st.st_mtime_ns, st.st_ino, None)
        problem = check_size(st.st_size, purpose, self.mirror.limits) or check_name(
            action.path, purpose
        )
        if problem:
            return self._fail(action, stat_fp, problem, permanent=True)
        try:
            fingerprint = current_fingerprint(full, action.local, st, attempts=HASH_ATTEMPTS)
            if purpose in JSONL_PURPOSES:
                problem = check_jsonl(full, purpose, self.mirror.limits)
        except FileNotFoundError:
            self._requeue(action.path)
            return Outcome(action, OutcomeStatus.VANISHED, reason="vanished before upload")
        except FileChangedError:
            return self._fail(action, stat_fp, "kept changing while it was read; will retry")
        except OSError as exc:
            return self._fail(action, stat_fp, f"cannot read: {exc.strerror or exc}")
        if problem:
            return self._fail(action, fingerprint, problem, permanent=True)
        if action.kind is ActionKind.REPLACE and _same_as_mirrored(
            action.row, fingerprint, purpose
        ):
            self.ledger.refresh(action.path, fingerprint)
            return Outcome(action, OutcomeStatus.REFRESHED, reason="same content after all")
        return self._upload(action, full, purpose, fingerprint)

    def _upload(self, action: Action, full: Path, purpose: str, fp: Fingerprint) -> Outcome:
        with self._pass_lock:
            self._sent[action.path] = fp
        intent_id = self.ledger.begin_upload(
            action.path,
            fp,
            filename=action.path,
            purpose=purpose,
            expires_after=action.expires_after,
            replaces=action.replaces,
            now=self.clock(),
        )
        self.step("upload.intent", action.path)
        attempt = (action.row.attempts if action.row else 0) + 1
        try:
            remote = self._send_file(action, full, purpose, fp)
        except AmbiguousError as exc:
            return Outcome(
                action,
                OutcomeStatus.AMBIGUOUS,
                reason=str(exc),
                intent_id=intent_id,
                bytes=fp.size,
                attempt=attempt,
            )
        except FatalError as exc:
            self.ledger.abandon_intent(intent_id, str(exc), now=self.clock())
            return Outcome(action, OutcomeStatus.FATAL, reason=str(exc), attempt=attempt)
        except RemoteError as exc:
            if exc.verdict is Verdict.RETRYABLE and self._moved(full, fp):
                # The client stops a body whose file changed size mid-way, so the server
                # stored nothing: not a failure, the new content is handled again.
                self.ledger.abandon_intent(intent_id, "changed while sent", now=self.clock())
                self._requeue(action.path)
                return Outcome(action, OutcomeStatus.CHANGED, reason="changed while uploading")
            permanent = exc.verdict is not Verdict.RETRYABLE
            return self._fail(
                action,
                fp,
                str(exc),
                permanent=permanent,
                intent_id=intent_id,
                retry_after=exc.retry_after,
                attempt=attempt,
            )
        except OSError as exc:
            if self._stat(full) is None:  # gone (deleted, moved away) before it was read
                self.ledger.abandon_intent(intent_id, "vanished before upload", now=self.clock())
                self._requeue(action.path)
                return Outcome(action, OutcomeStatus.VANISHED, reason="vanished before upload")
            return self._fail(
                action,
                fp,
                f"cannot read: {exc.strerror or exc}",
                intent_id=intent_id,
                attempt=attempt,
            )
        self.step("upload.sent", action.path)
        stale = self._moved(full, fp)
        deletes = self.ledger.complete_upload(intent_id, remote, stale=stale, now=self.clock())
        self.step("upload.committed", action.path)
        if stale:
            self._requeue(action.path)
        for delete in deletes:
            self._delete_old_version(delete.id, delete.path, delete.file_id or "")
        return Outcome(
            action,
            OutcomeStatus.DONE,
            file_id=remote.id,
            bytes=fp.size,
            attempt=attempt,
            stale=stale,
        )

    def _send_file(self, action: Action, full: Path, purpose: str, fp: Fingerprint) -> RemoteFile:
        """POST /files, or the Uploads API in parts for a large file (resumable)."""
        if self.multipart is not None and fp.sha256 and self.multipart.wanted(fp.size, purpose):
            job = MultipartJob(
                action.path, full, action.path, purpose, action.expires_after, fp.size, fp.sha256
            )
            return self.multipart.upload(job)
        return self.remote.upload(full, action.path, purpose, action.expires_after)

    def _sweep_uploads(self, result: PassResult) -> None:
        """Cancel and forget large-file uploads that can no longer be resumed."""
        if self.multipart is None or result.fatal:
            return
        try:
            self.multipart.sweep(
                self.mirror.folder, self.ledger.row, follow_links=self.mirror.follow_links
            )
        except FatalError as exc:
            result.fatal = str(exc)

    def _delete_old_version(self, intent_id: int, path: str, file_id: str) -> None:
        try:
            self.remote.delete(file_id)
            self.step("replace.old_deleted", path)
        except RemoteError as exc:  # the open intent is finished at the next start
            log.warning(
                "delete_failed", path=path, file_id=file_id, action="replace", error=str(exc)
            )
            return
        self.ledger.complete_delete(intent_id, now=self.clock())

    def _delete(self, action: Action) -> Outcome:
        file_id = action.row.file_id if action.row else None
        if file_id is None:
            return Outcome(action, OutcomeStatus.NOT_RUN, reason="nothing to delete")
        intent = self.ledger.begin_delete(action.path, file_id, now=self.clock())
        self.step("delete.intent", action.path)
        try:
            self.remote.delete(file_id)
            self.step("delete.sent", action.path)
        except FatalError as exc:
            return Outcome(action, OutcomeStatus.FATAL, reason=str(exc))
        except RemoteError as exc:
            return Outcome(action, OutcomeStatus.FAILED, reason=str(exc), file_id=file_id)
        self.ledger.complete_delete(intent.id, now=self.clock())
        return Outcome(action, OutcomeStatus.DONE, file_id=file_id)

    def _fix_ledger(self, action: Action, result: PassResult) -> None:
        if action.kind is ActionKind.REFRESH and action.local is not None:
            self.ledger.refresh(action.path, action.local.fingerprint())
            outcome = Outcome(action, OutcomeStatus.REFRESHED)
        else:
            self.ledger.forget(action.path, action.row.file_id if action.row else None)
            outcome = Outcome(action, OutcomeStatus.DONE)
        result.add(outcome)
        self.reporter.action_finished(outcome)

    # -- helpers -------------------------------------------------------------------------

    def _fail(
        self,
        action: Action,
        fingerprint: Fingerprint | None,
        reason: str,
        result: PassResult | None = None,
        *,
        permanent: bool = False,
        intent_id: int | None = None,
        retry_after: float | None = None,
        attempt: int = 1,
    ) -> Outcome:
        fp = fingerprint or (action.local.fingerprint() if action.local else None)
        with self._pass_lock:
            self._failed_content.add((fp.sha256, fp.size) if fp else (None, None))
        if fp is not None:
            self.ledger.record_failure(
                action.path,
                fp,
                reason,
                permanent=permanent,
                now=self.clock(),
                retry_after=retry_after,
                intent_id=intent_id,
            )
        outcome = Outcome(
            action, OutcomeStatus.FAILED, reason=reason, permanent=permanent, attempt=attempt
        )
        if result is not None:
            result.add(outcome)
            self.reporter.action_finished(outcome)
        return outcome

    def _moved(self, full: Path, fp: Fingerprint) -> bool:
        """Whether the file is gone or its stat differs from ``fp``'s."""
        after = self._stat(full)
        return after is None or (after.st_size, after.st_mtime_ns, after.st_ino) != (
            fp.size,
            fp.mtime_ns,
            fp.inode,
        )

    def _stat(self, full: Path) -> os.stat_result | None:
        """The file's stat, or None when it is gone or no longer a regular file."""
        try:
            st = full.stat() if self.mirror.follow_links else full.lstat()
        except OSError:
            return None
        return st if stat.S_ISREG(st.st_mode) else None

    def _requeue(self, path: str) -> None:
        self.ledger.mark_dirty([path], now=self.clock())


def _same_as_mirrored(row: LedgerRow | None, fp: Fingerprint, purpose: str) -> bool:
    """A replace whose fresh hash equals the mirrored content needs no upload."""
    return (
        row is not None
        and row.file_id is not None
        and row.sha256 is not None
        and row.sha256 == fp.sha256
        and row.size == fp.size
        and row.purpose == purpose
    )
