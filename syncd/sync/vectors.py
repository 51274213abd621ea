"""Keeping a vector store exact: one step at a time, every change through the ledger.

``VectorSync.run`` is one step, called by the engine after each pass (and by the
daemon's schedule, and by ``syncd sync`` while it waits). It never waits for indexing
itself: indexing is a state machine in the ledger (``syncd.state.vector_ledger``) that
each step advances, and ``next_due`` says when the next step has work. A step:

1. **The store.** ``vector_store_id``: retrieved (a 404 is one clear error naming it).
   ``vector_store = NAME``: the id the ledger recorded, or a store created once -- an
   intent with a nonce first, the nonce in the new store's metadata beside the owner
   tag; after a lost answer the store is found by that nonce, never by its name. A store
   syncd made that was deleted under its feet is made again (said in a warning).
2. **Reconcile by listing** the store's files on full passes, the first step of a
   process, and whenever an ``attaching``/``detaching`` intent is unsettled: intents are
   settled by what the store holds; attachments that vanished are attached again;
   attachments carrying this ledger's owner tag that the ledger lost are adopted; files
   others attached are counted and left alone.
3. **Indexing**: files past ``indexing_deadline`` fail (retryable); due polls ask the
   batch (one request while nothing changed; else its files by status) or the file,
   with backoff (0.5 s doubling to 5 s). ``failed`` with ``unsupported_file`` or
   ``invalid_file`` is permanent for that content; other failures and stalls are retried
   with the usual per-file backoff (1 min doubling to 1 h): detach, then attach again.
4. **Changes** (``syncd.sync.vector_plan``): new files attached (one request per file,
   or file batches of up to 2,000 with per-file attributes); attributes updated in
   place; old versions retired -- detached, then their File deleted -- only once the new
   version is ``completed`` (or failed for good), so the store never lacks the content;
   rows of a store no longer configured forgotten.

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
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import structlog

from syncd.api import RemoteFile
from syncd.errors import (
    AmbiguousError,
    ConfigError,
    FatalError,
    NotFoundError,
    PermanentError,
    RemoteError,
    VectorStoreGoneError,
)
from syncd.remote.protocol import FilesRemote
from syncd.remote.vector_stores import SupportsVectorStores, VectorStoresApi
from syncd.state.ledger import ErrorKind, Ledger, backoff_seconds
from syncd.state.vector_ledger import (
    AfterDetach,
    Attachment,
    AttachState,
    StoreRow,
    VectorLedger,
    dumps,
)
from syncd.sync.steps import StepHook, no_step
from syncd.sync.vector_plan import (
    VectorPlan,
    Wanted,
    deadline_of,
    plan_store,
    wanted_attachments,
)
from syncd.sync.vector_report import VectorReport
from syncd.vector_api import (
    MAX_BATCH_FILES,
    META_NONCE,
    META_OWNER,
    PERMANENT_ERROR_CODES,
    AttachRequest,
    StoreFile,
    VectorStore,
)
from syncd.vector_config import VectorConfig

POLL_FIRST_SECONDS = 0.5
POLL_MAX_SECONDS = 5.0
MIN_STEP_SECONDS = 0.5  # the next step is never due sooner than this after one ran
STORE_RETRY_SECONDS = 60.0  # a store that could not be reached is tried again after this
T = TypeVar("T")

log = structlog.get_logger(__name__)


def poll_interval(polls: int) -> float:
    """Wait before poll number ``polls + 1`` of a file still indexing."""
    return float(min(POLL_FIRST_SECONDS * 2.0**polls, POLL_MAX_SECONDS))


class _StoreGone(Exception):
    """The store vanished during the step (a 404 from the store itself)."""


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
        self._store_retry = True  # whether a store that could not be used is tried again
        self._batch_done: dict[str, int] = {}  # batch id -> files done at its last poll

    # -- hooks for the engine --------------------------------------------------------------

    def deleting(self, remote: FilesRemote) -> FilesRemote:
        """``remote`` whose ``delete`` detaches the file from every store first."""
        return DetachFirstRemote(remote, self)

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

    # -- one step ------------------------------------------------------------------------

    def run(self, *, full: bool, retry_waiting: bool = False) -> VectorReport:
        """One step (module docstring). Raises FatalError; reports everything else."""
        report = VectorReport(self.config.target)
        now = self.clock()
        owner = self.vl.owner_id()
        self._store_retry = True
        store = self._resolve(owner, report)
        if store is None:
            self._next_due = now + STORE_RETRY_SECONDS if self._store_retry else None
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
            self._expire(plan.expire)
            self._poll(store.id, plan.poll)
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
                store = self._refreshed(store, report)
        except _StoreGone:
            report.errors.append(f"{store.id} vanished during this step")
            self._listed = False
        except FatalError:
            raise
        except RemoteError as exc:  # a listing the server broke off, or could not give
            report.errors.append(f"{exc}; tried again at the next step")
        self._summarise(store.id, owner, report)
        return report

    def _refreshed(self, store: VectorStore, report: VectorReport) -> VectorStore:
        """The store retrieved again after a step changed it (usage, counts for status)."""
        try:
            store = self.api.retrieve_store(store.id)
        except NotFoundError as exc:
            raise _StoreGone from exc
        self.vl.store_checked(self._store_key(), _status(store), now=self.clock())
        report.usage_bytes = store.usage_bytes
        report.expires_at = store.expires_at
        return store

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

    # -- 1. the store ------------------------------------------------------------------------

    def _resolve(self, owner: str, report: VectorReport) -> VectorStore | None:
        """The store to keep, or None (with the reason in ``report.errors``)."""
        config = self.config
        key = self._store_key()
        for other in self.vl.stores():
            if other.key != key:  # a store the config no longer names: not shown any more
                self.vl.forget_store_key(other.key)
        row = self.vl.store(key)
        try:
            if config.store_id:
                return self._given_store(key, config.store_id, report)
            if row is not None and row.state == "ready" and row.store_id:
                try:
                    store = self.api.retrieve_store(row.store_id)
                except NotFoundError:
                    report.warnings.append(
                        f"vector store {row.store_id} ({config.name!r}), which syncd created, "
                        "was deleted outside syncd; creating a new one and attaching every "
                        "file again"
                    )
                    self._store_vanished(row.store_id)
                else:
                    return self._checked(key, store, report)
            return self._create_store(key, row, owner, report)
        except FatalError:
            raise
        except RemoteError as exc:
            report.errors.append(f"cannot reach the store ({exc}); tried again later")
            self.vl.store_problem(key, str(exc), gone=False, now=self.clock())
            return None

    def _store_key(self) -> str:
        """The ledger's key of the configured store: ``id:vs_...`` or ``name:NAME``."""
        config = self.config
        return f"id:{config.store_id}" if config.store_id else f"name:{config.name}"

    def _given_store(self, key: str, store_id: str, report: VectorReport) -> VectorStore | None:
        try:
            store = self.api.retrieve_store(store_id)
        except NotFoundError:
            problem = (
                "does not exist (a wrong vector_store_id, or the store was deleted); nothing "
                "is attached until the config names a store that exists"
            )
            report.errors.append(problem)
            self.vl.store_problem(key, problem, gone=True, now=self.clock())
            self._store_vanished(store_id)
            self._store_retry = False
            return None
        return self._checked(key, store, report, created=False)

    def _checked(
        self, key: str, store: VectorStore, report: VectorReport, *, created: bool = False
    ) -> VectorStore | None:
        """Record what the store looks like now; an expired store cannot be used."""
        self.vl.store_ready(
            key, store.id, store.name, created=created, status=_status(store), now=self.clock()
        )
        if store.expires_after_days is not None:
            report.warnings.append(
                f"vector store {store.id} expires {store.expires_after_days} days after its "
                "last activity (its expires_after): if nothing uses it for that long it is "
                "deleted, and with it the index syncd keeps"
            )
        if store.status == "expired":
            report.errors.append(f"{store.id} has expired; nothing can be attached to it")
            self._store_retry = False
            return None
        return store

    def _create_store(
        self, key: str, row: StoreRow | None, owner: str, report: VectorReport
    ) -> VectorStore | None:
        """The store a lost answer may have made (found by nonce), or a new one."""
        name = self.config.name or ""
        if row is not None and row.state == "creating":
            found = self._find_by_nonce(row.nonce_list(), owner)
            if found is not None:
                return self._checked(key, found, report, created=True)
        nonce = secrets.token_hex(12)
        self.vl.begin_store_create(key, name, nonce, now=self.clock())
        self.step("vector.store_intent", name)
        try:
            store = self.api.create_store(name, {META_OWNER: owner, META_NONCE: nonce})
        except AmbiguousError as exc:
            found = self._find_by_nonce([nonce], owner)
            if found is None:
                report.errors.append(
                    f"creating the store: {exc}; it is looked for by its nonce at the next step"
                )
                return None
            store = found
        log.info("vector_store_created", vector_store_id=store.id, name=name)
        return self._checked(key, store, report, created=True)

    def _find_by_nonce(self, nonces: Sequence[str], owner: str) -> VectorStore | None:
        """The newest store carrying one of ``nonces`` and our owner tag; the others such
        stores (made by the same lost request, provably ours) are deleted."""
        mine = sorted(
            (
                s
                for s in self.api.list_stores()
                if s.metadata.get(META_NONCE) in nonces and s.metadata.get(META_OWNER) == owner
            ),
            key=lambda s: (s.created_at, s.id),
        )
        for extra in mine[:-1]:
            self.api.delete_store(extra.id)
            log.info("vector_store_duplicate_deleted", vector_store_id=extra.id)
        return mine[-1] if mine else None

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

    # -- 2. reconcile by listing ---------------------------------------------------------

    def _reconcile(self, store_id: str, owner: str, report: VectorReport) -> None:
        """Settle intents and the ledger's view by what the store holds (docstring)."""
        try:
            listed = {sf.file_id: sf for sf in self.api.list_files(store_id)}
        except NotFoundError as exc:
            raise _StoreGone from exc
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
                    changes.append((store_id, row.file_id, _pending(now)))
            elif not ours:
                changes.append((store_id, row.file_id, _foreign(found, now)))
            else:
                changes.append((store_id, row.file_id, self._status_change(row, found, now)))
        self.vl.update_many(changes)
        for found in listed.values():
            if found.owner == owner:
                self._adopt(store_id, found, now)
            else:
                report.foreign += 1

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
        self.vl.adopt(dataclasses.replace(row, **self._status_change(row, found, now)))
        log.info("vector_attachment_adopted", vector_store_id=store_id, file_id=found.file_id)

    def _status_change(
        self, row: Attachment, found: StoreFile, now: float, *, seen: bool = True
    ) -> dict[str, Any]:
        """The row's columns for what the store says of the file now (``seen``: the
        answer carried its attributes, else the row keeps those it recorded)."""
        values: dict[str, Any] = {"updated_at": now}
        if seen:
            values["attributes"] = dumps(found.attributes)
        if found.status == "in_progress":
            started = row.started_at or now
            deadline = row.deadline or started + self.config.indexing_deadline
            polls = row.polls if row.state is AttachState.IN_PROGRESS else 0
            return values | {
                "state": AttachState.IN_PROGRESS,
                "deadline": deadline,
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
            return values | self._failure(row, f"indexing failed: {found.failure}", permanent, now)
        return values | self._failure(row, f"indexing ended {found.status}", False, now)

    def _failure(self, row: Attachment, reason: str, permanent: bool, now: float) -> dict[str, Any]:
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

    # -- 3. indexing -------------------------------------------------------------------------

    def _expire(self, rows: Sequence[Attachment]) -> None:
        now = self.clock()
        deadline = f"{self.config.indexing_deadline:g} s"
        self.vl.update_many(
            (
                row.store_id,
                row.file_id,
                self._failure(
                    row, f"still indexing after {deadline} (indexing_deadline)", False, now
                ),
            )
            for row in rows
        )
        for row in rows:
            log.warning("vector_indexing_stalled", path=row.path, file_id=row.file_id)

    def _poll(self, store_id: str, rows: Sequence[Attachment]) -> None:
        """Ask how the indexing of ``rows`` goes: per batch when they came in one."""
        groups: dict[str | None, list[Attachment]] = defaultdict(list)
        for row in rows:
            groups[row.batch_id].append(row)
        singles = list(groups.pop(None, []))
        for batch_id, group in groups.items():
            if self.stop.is_set():
                return
            singles += self._poll_batch(store_id, batch_id or "", group)
        self._each(singles, lambda row: self._poll_file(store_id, row))

    def _poll_batch(
        self, store_id: str, batch_id: str, group: list[Attachment]
    ) -> list[Attachment]:
        """Poll one batch; returns the rows to ask about one by one."""
        now = self.clock()
        try:
            batch = self.api.retrieve_batch(store_id, batch_id)
        except NotFoundError:
            return group
        except RemoteError as exc:
            log.warning("vector_poll_failed", batch_id=batch_id, error=str(exc))
            self.vl.update_many((r.store_id, r.file_id, self._poll_later(r, now)) for r in group)
            return []
        counts = batch.file_counts
        done = counts.completed + counts.failed + counts.cancelled
        if batch.status == "in_progress" and self._batch_done.get(batch_id) == done:
            self.vl.update_many((r.store_id, r.file_id, self._poll_later(r, now)) for r in group)
            return []  # nothing changed since the last poll: one request was enough
        self._batch_done[batch_id] = done
        by_status: dict[str, StoreFile] = {}
        for status in ("in_progress", "failed", "cancelled"):
            for listed in self._listing(self.api.list_batch_files, store_id, batch_id, status):
                by_status[listed.file_id] = listed
        changes = []
        for row in group:
            found = by_status.get(row.file_id)
            if found is None:  # neither indexing, failed nor cancelled: done
                done_file = StoreFile(row.file_id, store_id, "completed")
                change = self._status_change(row, done_file, now, seen=False)
            elif found.status == "in_progress":
                change = self._poll_later(row, now)
            else:
                change = self._status_change(row, found, now)
            changes.append((row.store_id, row.file_id, change))
        self.vl.update_many(changes)
        return []

    def _listing(self, lister: Callable[..., Iterator[StoreFile]], *args: Any) -> list[StoreFile]:
        try:
            return list(lister(*args))
        except NotFoundError:
            return []

    def _poll_later(self, row: Attachment, now: float) -> dict[str, Any]:
        return {"next_poll_at": now + poll_interval(row.polls), "polls": row.polls + 1}

    def _poll_file(self, store_id: str, row: Attachment) -> None:
        now = self.clock()
        try:
            found = self.api.retrieve_file(store_id, row.file_id)
        except NotFoundError:  # detached by someone: attached again by the next plan
            self.vl.update(store_id, row.file_id, **_pending(now))
            return
        except RemoteError as exc:
            log.warning("vector_poll_failed", path=row.path, error=str(exc))
            self.vl.update(store_id, row.file_id, **self._poll_later(row, now))
            return
        self.vl.update(store_id, row.file_id, **self._status_change(row, found, now))

    # -- 4. changes ----------------------------------------------------------------------

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
        requests = [
            AttachRequest(
                w.file_id,
                json.loads(w.attributes),
                json.loads(w.chunking) if w.chunking else None,
            )
            for w in chunk
        ]
        previous = {
            r.key: r
            for r in self.vl.attachments(store_id).values()
            if r.key in {x.key for x in rows}
        }
        try:
            if len(chunk) == 1:
                found = self.api.attach(store_id, requests[0])
                self.step("vector.attached", chunk[0].path)
                row = previous.get((store_id, chunk[0].file_id), rows[0])
                self.vl.update(store_id, found.file_id, **self._status_change(row, found, now))
            else:
                batch = self.api.attach_batch(store_id, requests)
                self.step("vector.attached", chunk[0].path)
                deadline = now + self.config.indexing_deadline
                self.vl.update_many(
                    (
                        store_id,
                        w.file_id,
                        {
                            "state": AttachState.IN_PROGRESS,
                            "batch_id": batch.id,
                            "deadline": deadline,
                            "next_poll_at": now + POLL_FIRST_SECONDS,
                            "polls": 1,
                            "last_error": None,
                            "next_attempt_at": None,
                        },
                    )
                    for w in chunk
                )
        except VectorStoreGoneError as exc:
            raise _StoreGone from exc
        except FatalError:
            raise
        except PermanentError as exc:
            if len(chunk) > 1:  # one bad file refuses the batch: find it, attach the rest
                return sum(self._attach_chunk(store_id, [w], report) for w in chunk)
            row = previous.get((store_id, chunk[0].file_id), rows[0])
            missing = isinstance(exc, NotFoundError)
            reason = (
                "its File is not on the remote (any more); it is uploaded again by a full pass"
                if missing
                else f"cannot be attached: {exc}"
            )
            self.vl.update(
                store_id, chunk[0].file_id, **self._failure(row, reason, not missing, now)
            )
            return 0
        except RemoteError as exc:
            # The request may have been carried out: the intents stay, settled by the
            # next listing, which is not tried before the backoff.
            log.warning("vector_attach_failed", files=len(chunk), error=str(exc))
            report.errors.append(f"attaching {len(chunk)} files: {exc}")
            self.vl.update_many(
                (
                    store_id,
                    r.file_id,
                    {
                        "last_error": f"attach request failed: {exc}",
                        "attempts": previous.get(r.key, r).attempts + 1,
                        "next_attempt_at": now
                        + backoff_seconds(previous.get(r.key, r).attempts + 1),
                    },
                )
                for r in rows
            )
            return 0
        log.info("vector_files_attached", vector_store_id=store_id, files=len(chunk))
        return len(chunk)

    def _update(self, store_id: str, pairs: Sequence[tuple[Attachment, Wanted]]) -> int:
        """Attributes changed in the config: set in place (idempotent, so the difference
        between what the ledger recorded and what is wanted is the intent)."""

        def update(pair: tuple[Attachment, Wanted]) -> int:
            row, want = pair
            try:
                self.api.update_attributes(store_id, row.file_id, json.loads(want.attributes))
            except NotFoundError:
                self.vl.update(store_id, row.file_id, **_pending(self.clock()))
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
        """Counts over the files the store should hold, and when the next step is due.

        A file whose attach request failed and waits out its backoff is a (retryable)
        failure, not "in progress": ``syncd sync`` does not wait minutes for it. An old
        version counts as ``waiting`` only while its successor is being indexed."""
        rows = self.ledger.rows()
        wanted, skipped = wanted_attachments(rows, self.config, owner)
        report.skipped = skipped
        attachments = self.vl.attachments(store_id)
        now = self.clock()
        due: list[float] = []
        indexing: set[str] = set()  # paths whose current version is on its way in
        for path, want in wanted.items():
            row = attachments.get((store_id, want.file_id))
            if row is None:
                report.in_progress += 1
                indexing.add(path)
                due.append(now)
            elif row.state is AttachState.COMPLETED:
                report.completed += 1
            elif row.state is AttachState.FAILED or (
                row.state in (AttachState.PENDING, AttachState.ATTACHING)
                and row.last_error is not None
                and (row.next_attempt_at or 0.0) > now
            ):
                report.failed += 1
                permanent = row.error_kind == ErrorKind.PERMANENT
                report.failures.append((path, row.last_error or "failed", permanent))
                if not permanent and row.next_attempt_at is not None:
                    due.append(row.next_attempt_at)
            elif row.state is AttachState.FOREIGN:
                report.failed += 1
                report.failures.append(
                    (
                        path,
                        "attached to the store by someone else (not with this ledger's "
                        "owner tag); left alone",
                        True,
                    )
                )
            else:
                report.in_progress += 1
                indexing.add(path)
                if row.state is AttachState.IN_PROGRESS:
                    deadline = deadline_of(row, self.config.indexing_deadline)
                    due += [t for t in (row.next_poll_at, deadline) if t is not None]
                else:
                    due.append(row.next_attempt_at or now)
        current = {(store_id, w.file_id) for w in wanted.values()}
        report.waiting = sum(
            1
            for key, row in attachments.items()
            if key not in current
            and row.state is not AttachState.FOREIGN
            and (row.path in indexing or row.path not in wanted)
        )
        earliest = min(due) if due else None
        self._next_due = None if earliest is None else max(earliest, now + MIN_STEP_SECONDS)
        report.next_due = self._next_due


class DetachFirstRemote:
    """A ``FilesRemote`` whose ``delete`` detaches the file from every vector store the
    ledger has it in first (``VectorSync.detach_everywhere``); all else is ``inner``'s."""

    def __init__(self, inner: FilesRemote, vectors: VectorSync) -> None:
        self.inner = inner
        self.vectors = vectors

    def upload(
        self,
        path: Path,
        filename: str,
        purpose: str,
        expires_after_seconds: int | None = None,
        *,
        size: int | None = None,
    ) -> RemoteFile:
        return self.inner.upload(path, filename, purpose, expires_after_seconds, size=size)

    def list_files(self, purpose: str | None = None, order: str = "desc") -> Iterator[RemoteFile]:
        return self.inner.list_files(purpose, order)

    def retrieve(self, file_id: str) -> RemoteFile:
        return self.inner.retrieve(file_id)

    def download(self, file_id: str, out: BinaryIO, expected_bytes: int | None = None) -> int:
        return self.inner.download(file_id, out, expected_bytes)

    def delete(self, file_id: str) -> None:
        self.vectors.detach_everywhere(file_id)
        self.inner.delete(file_id)

    def close(self) -> None:
        self.inner.close()


def _pending(now: float) -> dict[str, Any]:
    """Columns of an attachment known not to be in the store (to be attached again)."""
    return {
        "state": AttachState.PENDING,
        "batch_id": None,
        "deadline": None,
        "next_poll_at": None,
        "updated_at": now,
    }


def _foreign(found: StoreFile, now: float) -> dict[str, Any]:
    return {
        "state": AttachState.FOREIGN,
        "attributes": dumps(found.attributes),
        "last_error": "its attributes do not carry this ledger's owner tag: left alone",
        "updated_at": now,
    }


def _status(store: VectorStore) -> str:
    """What ``syncd status`` shows of a store, as the ledger keeps it."""
    return dumps(
        {
            "id": store.id,
            "name": store.name,
            "status": store.status,
            "usage_bytes": store.usage_bytes,
            "file_counts": store.file_counts.to_json(),
            "expires_after_days": store.expires_after_days,
            "expires_at": store.expires_at,
            "last_active_at": store.last_active_at,
        }
    )
