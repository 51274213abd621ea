"""Keeping a vector store exact: one step at a time, every change through the ledger.

``VectorSync.run`` is one step, called by the engine after each pass (and by the
daemon's schedule, and by ``syncd sync`` while it waits). It never waits for indexing
itself: indexing is a state machine in the ledger (``syncd.state.vector_ledger``) that
each step advances, and ``next_due`` says when the next step has work. A step:

1. **The store** (``syncd.sync.vector_store_keeper``): the id given or recorded, or a
   store created once (an intent with a nonce; never adopted by name).
2. **Reconcile by listing** the store's files on full passes, the first step of a
   process, and whenever an ``attaching``/``detaching`` intent is unsettled: intents are
   settled by what the store holds; attachments that vanished are attached again;
   attachments carrying this ledger's owner tag that the ledger lost are adopted; files
   others attached are counted and left alone.
3. **Indexing** (``syncd.sync.vector_poll``, ``vector_states``): deadlines, and due
   polls with backoff; failures retried after the usual per-file backoff (detach,
   then attach again), except ``unsupported_file``/``invalid_file``.
4. **Changes** (``syncd.sync.vector_plan``): new files attached (one request per file,
   or file batches of up to 2,000 with per-file attributes); attributes updated in
   place; old versions retired -- detached, then their File deleted -- only once the new
   version is ``completed``, so the store never lacks the content (a new version that
   failed, even for good, is the path's failure while the old one keeps serving, until a
   later version completes or the path is deleted); rows of a store no longer
   configured forgotten.

Deleting a File the engine deletes (a deleted path, a replace's old version, a duplicate)
goes through ``DetachFirstRemote``: every attachment of it is detached first, each with
its intent, then the File is deleted.

Crash safety: each request has its intent committed first (``attaching`` rows for an
attach or a batch, ``detaching`` for a detach, ``creating`` for a store), the step hook
(``vector.*`` in ``syncd.sync.steps``) runs after each durable step, and the next step
settles whatever a kill left. A store holds a file at most once, so no attach can make a
duplicate; an old version's File is deleted through a delete intent opened in the same
transaction that drops its attachment row, so none is orphaned.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from syncd.errors import (
    ConfigError,
    FatalError,
    NotFoundError,
    PermanentError,
    RemoteError,
    StoreGone,
    VectorStoreGoneError,
)
from syncd.remote.protocol import FilesRemote
from syncd.remote.vector_stores import SupportsVectorStores, VectorStoresApi
from syncd.state.ledger import Ledger, backoff_seconds
from syncd.state.vector_ledger import (
    AfterDetach,
    Attachment,
    AttachState,
    VectorLedger,
    dumps,
)
from syncd.sync.detach_first import DetachFirstRemote
from syncd.sync.plan import Action, ActionKind
from syncd.sync.steps import StepHook, no_step
from syncd.sync.vector_plan import (
    VectorPlan,
    Wanted,
    plan_store,
    summarise,
    wanted_attachments,
)
from syncd.sync.vector_poll import IndexPoller
from syncd.sync.vector_report import VectorReport
from syncd.sync.vector_states import (
    POLL_FIRST_SECONDS,
    failure,
    foreign,
    pending,
    status_change,
)
from syncd.sync.vector_store_keeper import StoreKeeper
from syncd.vector_api import (
    MAX_BATCH_FILES,
    AttachRequest,
    StoreFile,
)
from syncd.vector_config import VectorConfig, attaches

MIN_STEP_SECONDS = 0.5  # the next step is never due sooner than this after one ran
STORE_RETRY_SECONDS = 60.0  # a store that could not be reached is tried again after this
T = TypeVar("T")

log = structlog.get_logger(__name__)


def vector_sync_for(
    config: VectorConfig | None,
    ledger: Ledger,
    remote: FilesRemote,
    *,
    clock: Callable[[], float] = time.time,
    step: StepHook = no_step,
    concurrency: int = 8,
    stop: threading.Event | None = None,
) -> VectorSync | None:
    """The mirror's ``VectorSync``, or None when it keeps no store."""
    if config is None:
        return None
    if not isinstance(remote, SupportsVectorStores):
        raise ConfigError(
            f"vector store {config.target}: this remote does not offer the Vector Stores API"
        )
    return VectorSync(
        config,
        ledger,
        remote.vector_stores(),
        remote,
        clock=clock,
        step=step,
        concurrency=concurrency,
        stop=stop,
    )


class VectorSync:
    """Keeps one mirror's vector store exact (see the module docstring)."""

    def __init__(
        self,
        config: VectorConfig,
        ledger: Ledger,
        api: VectorStoresApi,
        files: FilesRemote,
        *,
        clock: Callable[[], float] = time.time,
        step: StepHook = no_step,
        concurrency: int = 8,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.vl = VectorLedger(ledger)
        self.api = api
        self.files = files  # the plain remote: retired versions are detached already
        self.clock = clock
        self.step = step
        self.concurrency = max(1, concurrency)
        self.stop = stop or threading.Event()
        self._listed = False
        self._next_due: float | None = None
        self.keeper = StoreKeeper(
            config, self.vl, api, clock=clock, step=step, vanished=self._store_vanished
        )
        self.poller = IndexPoller(
            self.vl,
            api,
            indexing_deadline=config.indexing_deadline,
            clock=clock,
            each=self._each,
            stop=self.stop,
        )

    # -- hooks for the engine --------------------------------------------------------------

    def deleting(self, remote: FilesRemote) -> FilesRemote:
        """``remote`` whose ``delete`` detaches the file from every store first."""
        return DetachFirstRemote(remote, self.detach_everywhere)

    def next_due(self) -> float | None:
        """Unix time at which ``run`` has work (a poll, a deadline, a retry), if any."""
        return self._next_due

    def detach_everywhere(self, file_id: str) -> None:
        """Detach ``file_id`` from every store the ledger has it attached to, each with
        its intent (before the File is deleted). Raises RemoteError (the delete waits)."""
        for row in self.vl.attachments_of(file_id):
            if row.state is AttachState.FOREIGN:
                continue
            row = dataclasses.replace(row, after_detach=AfterDetach.DROP)
            if row.state is AttachState.PENDING:
                self.vl.finish_detach(row, now=self.clock())
                continue
            self._detach(row)

    def preview(self, actions: Sequence[Action]) -> list[tuple[str, str, str]]:
        """What the store's step after these Files actions would do, for ``--dry-run``:
        ``(verb, path or store, why)`` from the config and the ledger alone (no request;
        attributes changed in the config show once the store is known)."""
        target, found = self.config.target, []
        row = self.vl.store(self.keeper.key)
        store_id = self.config.store_id or (
            row.store_id if row is not None and row.state == "ready" else None
        )
        if store_id is None:
            found.append(("create", target, "the vector store syncd creates once"))
        for action in actions:
            old = action.row.file_id if action.row is not None else None
            attached = bool(old) and any(
                a.state is not AttachState.FOREIGN for a in self.vl.attachments_of(str(old))
            )
            if action.kind in (ActionKind.UPLOAD, ActionKind.REPLACE) and attaches(action.purpose):
                why = f"to vector store {target} once uploaded"
                if attached:
                    why += "; the old version is detached once the new one is indexed"
                found.append(("attach", action.path, why))
            elif action.kind is ActionKind.DELETE and attached:
                found.append(("detach", action.path, f"from {target}, before its file is deleted"))
        owner = self.vl.known_owner()  # None: nothing attached yet, nothing to update
        if store_id is not None and owner is not None:
            acted = {action.path for action in actions}
            for current, _ in self._plan(store_id, owner, retry_waiting=False).update:
                if current.path not in acted:  # a new version gets the new attributes
                    found.append(("update", current.path, f"attributes or chunking, {target}"))
        return found

    # -- one step ------------------------------------------------------------------------

    def run(self, *, full: bool, retry_waiting: bool = False) -> VectorReport:
        """One step (module docstring). Raises FatalError; reports everything else."""
        report = VectorReport(self.config.target)
        now = self.clock()
        owner = self.vl.owner_id()
        store = self.keeper.resolve(owner, report)
        if store is None:
            self._next_due = now + STORE_RETRY_SECONDS if self.keeper.retry else None
            report.next_due = self._next_due
            return report
        report.store_id = store.id
        report.usage_bytes = store.usage_bytes
        report.expires_at = store.expires_at
        try:
            unsettled = any(
                a.state in (AttachState.ATTACHING, AttachState.DETACHING)
                for a in self.vl.attachments(store.id).values()
            )
            if full or unsettled or not self._listed:
                self._reconcile(store.id, owner, report)
                self._listed = True
            plan = self._plan(store.id, owner, retry_waiting)
            self.poller.expire(plan.expire)
            self.poller.poll(store.id, plan.poll)
            plan = self._plan(store.id, owner, retry_waiting)
            retried = self._retry(plan.retry)
            wanted = {w.path: w for w in plan.attach}
            now_wanted = self._wanted_now(owner) if retried else {}
            for row in retried:
                want = now_wanted.get(row.path)
                if want is not None and want.file_id == row.file_id:
                    wanted[want.path] = want
            report.attached += self._attach(store.id, list(wanted.values()), report)
            report.updated += self._update(store.id, plan.update)
            report.retired += self._retire(plan.retire)
            for row in plan.forget:
                self.vl.drop(row.store_id, row.file_id)
            worked = plan.poll or plan.expire or report.attached or report.retired
            if worked or report.updated:
                store = self.keeper.refresh(store, report)
        except StoreGone:
            report.errors.append(f"{store.id} vanished during this step")
            self._listed = False
        except FatalError:
            raise
        except RemoteError as exc:  # a listing the server broke off, or could not give
            report.errors.append(f"{exc}; tried again at the next step")
        self._summarise(store.id, owner, report)
        return report

    def _plan(self, store_id: str, owner: str, retry_waiting: bool) -> VectorPlan:
        rows = self.ledger.rows()
        wanted, skipped = wanted_attachments(rows, self.config, owner)
        return plan_store(
            store_id,
            wanted,
            rows,
            self.vl.attachments(),
            now=self.clock(),
            retry_waiting=retry_waiting,
            skipped=tuple(skipped),
            indexing_deadline=self.config.indexing_deadline,
        )

    def _wanted_now(self, owner: str) -> dict[str, Wanted]:
        return wanted_attachments(self.ledger.rows(), self.config, owner)[0]

    def _store_vanished(self, store_id: str) -> None:
        """The store is gone with everything in it: its rows go; old versions kept for
        it are retired (their Files deleted)."""
        rows = self.ledger.rows()
        for row in self.vl.attachments(store_id).values():
            tracked = rows.get(row.path)
            if tracked is not None and tracked.file_id == row.file_id:
                self.vl.drop(row.store_id, row.file_id)
            else:
                retired = dataclasses.replace(row, after_detach=AfterDetach.RETIRE)
                self._delete_retired(self.vl.finish_detach(retired, now=self.clock()))
        self.vl.forget_store(store_id)

    # -- reconcile by listing ---------------------------------------------------------

    def _reconcile(self, store_id: str, owner: str, report: VectorReport) -> None:
        """Settle intents and the ledger's view by what the store holds (docstring)."""
        try:
            listed = {sf.file_id: sf for sf in self.api.list_files(store_id)}
        except NotFoundError as exc:
            raise StoreGone from exc
        now = self.clock()
        changes: list[tuple[str, str, dict[str, Any]]] = []
        for row in self.vl.attachments(store_id).values():
            found = listed.pop(row.file_id, None)
            ours = found is not None and found.owner == owner
            if row.state is AttachState.DETACHING:
                if ours:
                    self._delete_retired(self._detach(row))
                else:
                    self._delete_retired(self.vl.finish_detach(row, now=now))
            elif row.state is AttachState.FOREIGN:
                continue
            elif found is None:
                if row.state is not AttachState.PENDING:
                    changes.append((store_id, row.file_id, pending(now)))
            elif not ours:
                changes.append((store_id, row.file_id, foreign(found, now)))
            else:
                changes.append((store_id, row.file_id, self._change(row, found, now)))
        self.vl.update_many(changes)
        for found in listed.values():
            if found.owner == owner:
                self._adopt(store_id, found, now)
            else:
                report.foreign += 1

    def _change(self, row: Attachment, found: StoreFile, now: float) -> dict[str, Any]:
        deadline = self.config.indexing_deadline
        return status_change(row, found, now, indexing_deadline=deadline)

    def _adopt(self, store_id: str, found: StoreFile, now: float) -> None:
        """An attachment with our owner tag the ledger had no row for."""
        path = found.attributes.get("path")
        sha = found.attributes.get("sha256")
        row = Attachment(
            store_id,
            found.file_id,
            str(path) if isinstance(path, str) else f"(unknown path of {found.file_id})",
            AttachState.PENDING,
            sha256=str(sha) if isinstance(sha, str) else None,
            attributes=dumps(found.attributes),
            started_at=now,
            updated_at=now,
        )
        self.vl.adopt(dataclasses.replace(row, **self._change(row, found, now)))
        log.info("vector_attachment_adopted", vector_store_id=store_id, file_id=found.file_id)

    # -- changes ----------------------------------------------------------------------

    def _attach(self, store_id: str, wanted: Sequence[Wanted], report: VectorReport) -> int:
        """Attach ``wanted`` (intent first): singly, or in batches of up to 2,000."""
        attached = 0
        for start in range(0, len(wanted), MAX_BATCH_FILES):
            if self.stop.is_set():
                break
            chunk = list(wanted[start : start + MAX_BATCH_FILES])
            attached += self._attach_chunk(store_id, chunk, report)
        return attached

    def _attach_chunk(self, store_id: str, chunk: list[Wanted], report: VectorReport) -> int:
        """Attach one request's worth of files: the intents, the request, the outcome."""
        now = self.clock()
        rows = [
            Attachment(
                store_id,
                w.file_id,
                w.path,
                AttachState.ATTACHING,
                sha256=w.sha256,
                attributes=w.attributes,
                chunking=w.chunking,
            )
            for w in chunk
        ]
        self.vl.begin_attach(rows, now=now)
        self.step("vector.attach_intent", chunk[0].path)
        keys = {r.key for r in rows}
        recorded = {k: r for k, r in self.vl.attachments(store_id).items() if k in keys}
        try:
            self._send_attach(store_id, chunk, recorded, now)
        except VectorStoreGoneError as exc:
            raise StoreGone from exc
        except FatalError:
            raise
        except PermanentError as exc:
            if len(chunk) > 1:  # one bad file refuses the batch: find it, attach the rest
                return sum(self._attach_chunk(store_id, [w], report) for w in chunk)
            missing = isinstance(exc, NotFoundError)
            reason = (
                "its File is not on the remote (any more); it is uploaded again by a full pass"
                if missing
                else f"cannot be attached: {exc}"
            )
            row = recorded.get(rows[0].key, rows[0])
            self.vl.update(store_id, row.file_id, **failure(row, reason, not missing, now))
            return 0
        except RemoteError as exc:
            # The request may have been carried out: the intents stay, settled by the
            # next listing, which is not tried before the backoff.
            log.warning("vector_attach_failed", files=len(chunk), error=str(exc))
            report.errors.append(f"attaching {len(chunk)} files: {exc}")
            tries = {r.key: recorded.get(r.key, r).attempts + 1 for r in rows}
            self.vl.update_many(
                (
                    store_id,
                    r.file_id,
                    {
                        "last_error": f"attach request failed: {exc}",
                        "attempts": tries[r.key],
                        "next_attempt_at": now + backoff_seconds(tries[r.key]),
                    },
                )
                for r in rows
            )
            return 0
        log.info("vector_files_attached", vector_store_id=store_id, files=len(chunk))
        return len(chunk)

    def _send_attach(
        self,
        store_id: str,
        chunk: list[Wanted],
        recorded: dict[tuple[str, str], Attachment],
        now: float,
    ) -> None:
        """One attach (``POST .../files``) or one batch (the ``files`` form), and what its
        answer means for the rows."""
        requests = [
            AttachRequest(
                w.file_id, json.loads(w.attributes), json.loads(w.chunking) if w.chunking else None
            )
            for w in chunk
        ]
        if len(chunk) == 1:
            found = self.api.attach(store_id, requests[0])
            self.step("vector.attached", chunk[0].path)
            row = recorded[store_id, chunk[0].file_id]
            self.vl.update(store_id, found.file_id, **self._change(row, found, now))
            return
        batch = self.api.attach_batch(store_id, requests)
        self.step("vector.attached", chunk[0].path)
        started = {
            "state": AttachState.IN_PROGRESS,
            "batch_id": batch.id,
            "deadline": now + self.config.indexing_deadline,
            "next_poll_at": now + POLL_FIRST_SECONDS,
            "polls": 1,
            "last_error": None,
            "next_attempt_at": None,
        }
        self.vl.update_many((store_id, w.file_id, started) for w in chunk)

    def _update(self, store_id: str, pairs: Sequence[tuple[Attachment, Wanted]]) -> int:
        """Attributes changed in the config: set in place (idempotent, so the difference
        between what the ledger recorded and what is wanted is the intent)."""

        def update(pair: tuple[Attachment, Wanted]) -> int:
            row, want = pair
            try:
                self.api.update_attributes(store_id, row.file_id, json.loads(want.attributes))
            except NotFoundError:
                self.vl.update(store_id, row.file_id, **pending(self.clock()))
                return 0
            except FatalError:
                raise
            except RemoteError as exc:
                log.warning("vector_update_failed", path=row.path, error=str(exc))
                return 0
            self.vl.update(
                store_id, row.file_id, attributes=want.attributes, updated_at=self.clock()
            )
            return 1

        return sum(self._each(pairs, update))

    def _retry(self, rows: Sequence[Attachment]) -> list[Attachment]:
        """Failed or stalled files whose backoff ran out: detached, to be attached again."""
        done: list[Attachment] = []
        for row in rows:
            if self.stop.is_set():
                break
            try:
                self._detach(dataclasses.replace(row, after_detach=AfterDetach.REATTACH))
            except FatalError:
                raise
            except RemoteError as exc:
                log.warning("vector_detach_failed", path=row.path, error=str(exc))
                continue
            done.append(row)
        return done

    def _retire(self, rows: Sequence[Attachment]) -> int:
        """Old versions out of the store, then their Files deleted (each with its intent)."""

        def retire(row: Attachment) -> int:
            row = dataclasses.replace(row, after_detach=AfterDetach.RETIRE)
            try:
                if row.state in (AttachState.PENDING, AttachState.FOREIGN):
                    intent = self.vl.finish_detach(row, now=self.clock())  # nothing attached
                else:
                    intent = self._detach(row)
            except FatalError:
                raise
            except RemoteError as exc:
                log.warning("vector_detach_failed", path=row.path, error=str(exc))
                return 0
            self._delete_retired(intent)
            return 1

        return sum(self._each(rows, retire))

    def _detach(self, row: Attachment) -> Any:
        """Detach one attachment of ours: intent, request, outcome (``finish_detach``'s
        answer: the delete intent of a retired version's File, if one was opened)."""
        after = AfterDetach(row.after_detach or AfterDetach.DROP)
        self.vl.begin_detach(row.store_id, row.file_id, after, now=self.clock())
        self.step("vector.detach_intent", row.path)
        self.api.detach(row.store_id, row.file_id)
        self.step("vector.detached", row.path)
        log.info("vector_file_detached", path=row.path, file_id=row.file_id, why=after.value)
        return self.vl.finish_detach(dataclasses.replace(row, after_detach=after), now=self.clock())

    def _delete_retired(self, intent: Any) -> None:
        """Delete a retired version's File; a failure leaves the intent for the next start."""
        if intent is None:
            return
        try:
            self.files.delete(intent.file_id or "")
        except FatalError:
            raise
        except RemoteError as exc:
            log.warning("delete_failed", path=intent.path, file_id=intent.file_id, error=str(exc))
            return
        self.ledger.complete_delete(intent.id, now=self.clock())
        log.info("old_version_deleted", path=intent.path, file_id=intent.file_id)

    def _each(self, items: Sequence[T], work: Callable[[T], Any]) -> list[Any]:
        """``work`` over ``items``, ``concurrency`` at a time; stops early when asked."""
        if len(items) <= 1 or self.concurrency == 1:
            return [work(item) for item in items if not self.stop.is_set()]

        def guarded(item: T) -> Any:
            return None if self.stop.is_set() else work(item)

        with ThreadPoolExecutor(min(self.concurrency, len(items)), "syncd-vector") as pool:
            return [r for r in pool.map(guarded, items) if r is not None]

    # -- the summary -----------------------------------------------------------------------

    def _summarise(self, store_id: str, owner: str, report: VectorReport) -> None:
        """Counts over the files the store should hold, and when the next step is due."""
        wanted, skipped = wanted_attachments(self.ledger.rows(), self.config, owner)
        report.skipped = skipped
        now = self.clock()
        earliest = summarise(
            report,
            store_id,
            wanted,
            self.vl.attachments(store_id),
            now=now,
            indexing_deadline=self.config.indexing_deadline,
        )
        self._next_due = None if earliest is None else max(earliest, now + MIN_STEP_SECONDS)
        report.next_due = self._next_due
