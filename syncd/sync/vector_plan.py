"""The vector store planner: pure functions from (ledger rows, attachments, config) to actions.

No I/O and no clock (``now`` is an argument), like ``syncd.sync.plan``; the executor is
``syncd.sync.vectors``. Two steps:

``wanted_attachments``: which files the store should hold. A tracked path whose current
remote file is known by its hash (not stale) and whose purpose file search takes, with
the attributes it gets: the config's (mirror, then its rule), then syncd's own three
(``path``, ``sha256``, ``syncd_owner``). A path longer than an attribute value may be
(512 characters) cannot be given its ``path`` attribute: it is skipped, with the reason.

``plan_store``: what to do, for every attachment row and every wanted file:

====================================  ===============================================
wanted file, no row (or ``pending``)  ``attach`` (a pending row once its backoff ran out)
``in_progress``                       ``expire`` past its deadline, else ``poll`` when due;
                                      ``update`` its attributes when they differ
``completed``                         ``update`` its attributes when they differ
``failed``, retryable, backoff over   ``retry`` (detach, then attach again)
``failed``, permanent                 nothing until the content changes (a new file)
an old version (the path now holds    ``retire`` (detach, then delete its File) once the
another file, or is gone)             new version is ``completed``, or at once when
                                      nothing will replace it (the path is gone); until
                                      then it keeps serving searches (``waiting``), also
                                      while the new version has failed (even for good)
a row of another store                ``forget`` it (the store is no longer configured:
                                      left as it is) -- or ``retire`` an old version there
``attaching``/``detaching``           ``unsettled``: only listing the store tells
``foreign``                           nothing (someone else attached it); forgotten once
                                      the file is no longer ours
====================================  ===============================================

Only rows are ever detached, and a row exists only for a file syncd attached with its
owner tag (or adopted by that tag): files others attached never appear in a plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from syncd.state.ledger import ErrorKind, LedgerRow
from syncd.state.vector_ledger import SERVING, Attachment, AttachState, dumps
from syncd.sync.vector_report import VectorReport
from syncd.vector_api import (
    ATTR_OWNER,
    ATTR_PATH,
    ATTR_SHA256,
    MAX_ATTRIBUTE_STRING,
)
from syncd.vector_config import VectorConfig, attaches


@dataclass(frozen=True)
class Wanted:
    """One file the store should hold, with exactly these attributes and chunking."""

    path: str
    file_id: str
    sha256: str
    attributes: str  # JSON text (``dumps``), comparable with ``Attachment.attributes``
    chunking: str | None  # JSON text of the strategy; None: auto


@dataclass(frozen=True)
class VectorPlan:
    store_id: str
    attach: tuple[Wanted, ...] = ()
    update: tuple[tuple[Attachment, Wanted], ...] = ()
    poll: tuple[Attachment, ...] = ()
    expire: tuple[Attachment, ...] = ()
    retry: tuple[Attachment, ...] = ()
    retire: tuple[Attachment, ...] = ()
    forget: tuple[Attachment, ...] = ()
    unsettled: tuple[Attachment, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (path, why it cannot be attached)
    waiting: int = 0  # old versions still serving until their successor is indexed

    @property
    def empty(self) -> bool:
        return not (
            self.attach
            or self.update
            or self.poll
            or self.expire
            or self.retry
            or self.retire
            or self.forget
        )


@dataclass
class _Builder:
    attach: list[Wanted] = field(default_factory=list)
    update: list[tuple[Attachment, Wanted]] = field(default_factory=list)
    poll: list[Attachment] = field(default_factory=list)
    expire: list[Attachment] = field(default_factory=list)
    retry: list[Attachment] = field(default_factory=list)
    retire: list[Attachment] = field(default_factory=list)
    forget: list[Attachment] = field(default_factory=list)
    unsettled: list[Attachment] = field(default_factory=list)
    waiting: int = 0


def wanted_attachments(
    rows: Mapping[str, LedgerRow], config: VectorConfig, owner: str
) -> tuple[dict[str, Wanted], list[tuple[str, str]]]:
    """The files the store should hold, by path, and the paths that cannot be attached."""
    wanted: dict[str, Wanted] = {}
    skipped: list[tuple[str, str]] = []
    for path, row in sorted(rows.items()):
        if row.file_id is None or row.sha256 is None or not attaches(row.purpose):
            continue
        if len(path) > MAX_ATTRIBUTE_STRING:
            skipped.append(
                (
                    path,
                    f"its path has {len(path)} characters; a vector store attribute holds "
                    f"at most {MAX_ATTRIBUTE_STRING}, so it is not attached",
                )
            )
            continue
        attributes, chunking = config.for_path(path)
        attributes |= {ATTR_PATH: path, ATTR_SHA256: row.sha256, ATTR_OWNER: owner}
        wanted[path] = Wanted(
            path,
            row.file_id,
            row.sha256,
            dumps(attributes),
            dumps(chunking.to_json()) if chunking is not None else None,
        )
    return wanted, skipped


def plan_store(
    store_id: str,
    wanted: Mapping[str, Wanted],
    rows: Mapping[str, LedgerRow],
    attachments: Mapping[tuple[str, str], Attachment],
    *,
    now: float,
    retry_waiting: bool = False,
    skipped: tuple[tuple[str, str], ...] = (),
    indexing_deadline: float | None = None,
) -> VectorPlan:
    """What to do to keep ``store_id`` holding exactly ``wanted`` (module docstring).
    ``indexing_deadline`` (seconds from the attach) is the config's now: it wins over
    the deadline a row recorded, so changing it applies to files already indexing."""
    plan = _Builder()
    for _, row in sorted(attachments.items()):
        if row.state in (AttachState.ATTACHING, AttachState.DETACHING):
            plan.unsettled.append(row)
            continue
        if row.store_id != store_id:
            _other_store(row, rows, plan)
            continue
        want = wanted.get(row.path)
        if want is not None and want.file_id == row.file_id:
            _current(row, want, now, retry_waiting, plan, indexing_deadline)
        else:
            _old_version(row, want, rows, attachments, store_id, plan)
    for _, want in sorted(wanted.items()):
        if (store_id, want.file_id) not in attachments:
            plan.attach.append(want)
    return VectorPlan(
        store_id=store_id,
        attach=tuple(plan.attach),
        update=tuple(plan.update),
        poll=tuple(plan.poll),
        expire=tuple(plan.expire),
        retry=tuple(plan.retry),
        retire=tuple(plan.retire),
        forget=tuple(plan.forget),
        unsettled=tuple(plan.unsettled),
        skipped=skipped,
        waiting=plan.waiting,
    )


def _due(at: float | None, now: float, retry_waiting: bool = False) -> bool:
    return at is None or at <= now or retry_waiting


def deadline_of(row: Attachment, indexing_deadline: float | None) -> float | None:
    """When ``row``'s indexing counts as stalled."""
    if indexing_deadline is not None and row.started_at is not None:
        return row.started_at + indexing_deadline
    return row.deadline


def _current(
    row: Attachment,
    want: Wanted,
    now: float,
    retry_waiting: bool,
    plan: _Builder,
    indexing_deadline: float | None,
) -> None:
    """A row of the file the path holds now."""
    if row.state is AttachState.PENDING:
        if _due(row.next_attempt_at, now, retry_waiting):
            plan.attach.append(want)
    elif row.state is AttachState.IN_PROGRESS:
        deadline = deadline_of(row, indexing_deadline)
        if deadline is not None and deadline <= now:
            plan.expire.append(row)
            return
        if _due(row.next_poll_at, now):
            plan.poll.append(row)
        if row.attributes != want.attributes:
            plan.update.append((row, want))
    elif row.state is AttachState.COMPLETED:
        if row.attributes != want.attributes:
            plan.update.append((row, want))
    elif (
        row.state is AttachState.FAILED
        and row.error_kind != ErrorKind.PERMANENT
        and _due(row.next_attempt_at, now, retry_waiting)
    ):
        plan.retry.append(row)


def _old_version(
    row: Attachment,
    want: Wanted | None,
    rows: Mapping[str, LedgerRow],
    attachments: Mapping[tuple[str, str], Attachment],
    store_id: str,
    plan: _Builder,
) -> None:
    """A row of a file the path no longer holds (or of a path no longer wanted)."""
    if row.state is AttachState.FOREIGN:
        if not _is_current(row, rows):
            plan.forget.append(row)
        return
    tracked = rows.get(row.path)
    if want is None:
        if tracked is not None and tracked.file_id == row.file_id:
            # Still the path's file, no longer wanted here (its purpose changed, its
            # path became too long): out of the store.
            plan.retire.append(row)
        elif tracked is not None and tracked.file_id is not None and tracked.sha256 is None:
            plan.waiting += 1  # a new version is being uploaded (stale): wait for it
        else:
            plan.retire.append(row)  # the path is gone, or holds what will not be attached
        return
    # Only a completed successor replaces it. One that failed (for good, or retried after
    # a stall) is the path's failure while this version keeps serving: retiring it then
    # would leave the store without the file's content. A later version, or the path's
    # delete, takes it from here.
    successor = attachments.get((store_id, want.file_id))
    if successor is not None and successor.state is AttachState.COMPLETED:
        plan.retire.append(row)
    else:
        plan.waiting += 1


def _other_store(row: Attachment, rows: Mapping[str, LedgerRow], plan: _Builder) -> None:
    """A row of a store the mirror no longer names: its current files are left there
    (forgotten); an old version kept for it is retired, so its File is deleted."""
    if row.state is AttachState.FOREIGN or _is_current(row, rows):
        plan.forget.append(row)
    else:
        plan.retire.append(row)


def _is_current(row: Attachment, rows: Mapping[str, LedgerRow]) -> bool:
    tracked = rows.get(row.path)
    return tracked is not None and tracked.file_id == row.file_id


def summarise(
    report: VectorReport,
    store_id: str,
    wanted: Mapping[str, Wanted],
    attachments: Mapping[tuple[str, str], Attachment],
    *,
    now: float,
    indexing_deadline: float | None = None,
) -> float | None:
    """Fill ``report``'s counts over the files the store should hold; return when the
    next step has work (a poll, a deadline, a retry; None: nothing is due).

    A file whose attach request failed and waits out its backoff is a (retryable)
    failure, not "in progress": ``syncd sync`` does not wait minutes for it. An old
    version counts as ``waiting`` only while its successor is on its way in."""
    due: list[float] = []
    indexing: set[str] = set()  # paths whose current version is on its way in
    current = {(store_id, w.file_id) for w in wanted.values()}
    serving_old = {  # paths an old version still serves (its successor not completed)
        row.path
        for key, row in attachments.items()
        if key not in current and key[0] == store_id and row.state in SERVING
    }
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
            reason = row.last_error or "failed"
            if path in serving_old:
                reason += "; the previous version stays in the store until a new one is indexed"
            report.failures.append((path, reason, permanent))
            if not permanent and row.next_attempt_at is not None:
                due.append(row.next_attempt_at)
        elif row.state is AttachState.FOREIGN:
            report.failed += 1
            why = "attached to the store by someone else (not with this ledger's owner tag)"
            report.failures.append((path, f"{why}; left alone", True))
        else:
            report.in_progress += 1
            indexing.add(path)
            if row.state is AttachState.IN_PROGRESS:
                deadline = deadline_of(row, indexing_deadline)
                due += [t for t in (row.next_poll_at, deadline) if t is not None]
            else:
                due.append(row.next_attempt_at or now)
    report.waiting = sum(
        1
        for key, row in attachments.items()
        if key not in current
        and row.state is not AttachState.FOREIGN
        and (row.path in indexing or row.path not in wanted)
    )
    return min(due) if due else None
