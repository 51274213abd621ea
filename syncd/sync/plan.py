"""The planner: a pure function from (local scan, ledger, remote listing) to actions.

No I/O, no clock (``now`` is an argument), no configuration reading: the same inputs
always give the same plan, which is what the table-driven tests pin down.

Every path in the local scan or the ledger is classified, as rclone's march does:

==================  ============================================================
local only          ``upload`` (new file)
both                equal content: skip ``unchanged`` (or ``refresh`` the stat when
                    the file was touched but its hash is the same); changed content
                    or a new purpose: ``replace`` (upload new, then delete old)
ledger only         ``delete`` syncd's remote copy (guarded, below), or ``forget`` a
                    row that has no remote copy left
==================  ============================================================

Equality is size, then (mtime_ns, inode), then SHA-256; any doubt (no hash, a hash
taken while the file changed) means "changed". A row whose remote file is missing
from the listing is re-uploaded (or forgotten if the local file is gone too). Only ids
recorded in the ledger are ever deleted: remote files syncd did not create never
appear in a plan. Failed content is skipped until it changes (permanent) or until its
backoff has elapsed (retryable; ``PlanOptions.retry_waiting`` tries it at once;
``retry_failed`` tries permanent failures again too).

Mass-delete guard: with ``max_delete`` set, more deletes than that are refused; by
default a plan deleting more than half of the tracked files, when more than
``GUARD_MIN_DELETES`` would go, is refused. Refused deletes are listed in
``Plan.refused`` with a message saying how to override. The daemon deletes in many
small passes, so it also passes the deletes carried out within its window
(``recent_deletes``): they count with this plan's, so a mass delete spread over passes
is refused too. Deletes an operator approved (``approved``: the exact copies of a
refused pass, ``syncd approve-deletes``) pass the guard and do not count.

Delete delay (``delete_delay`` > 0): a tracked file gone locally is not deleted at once
but deferred (``defer``: the executor records a pending delete due ``delete_delay`` later);
while it is pending the path is skipped ``delayed``; once due (``pending_deletes``,
against ``now``) it is a ``delete``, guarded like any other. A pending delete whose file
is back (or whose row changed) is listed in ``Plan.cancelled``: the file is then planned
as usual, so the same content is "unchanged" (nothing uploaded) and another content a
"replace".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from syncd.api import RemoteFile
from syncd.durations import format_duration
from syncd.local.ignorefile import IgnoreRules
from syncd.local.rules import PathFilter, PurposeRule, choose_purpose
from syncd.local.scan import LocalFile
from syncd.state.deletes import PendingDelete
from syncd.state.ledger import ErrorKind, LedgerRow

GUARD_MIN_DELETES = 10


class ActionKind(StrEnum):
    UPLOAD = "upload"
    REPLACE = "replace"
    REFRESH = "refresh"
    FORGET = "forget"
    DELETE = "delete"
    DEFER = "defer"  # delete_delay: the delete is recorded as pending, not carried out


class Skip(StrEnum):
    UNCHANGED = "unchanged"
    BACKOFF = "backoff"  # a retryable failure whose wait has not elapsed
    FAILED = "failed"  # a permanent failure; the content has not changed since
    EXPIRED = "expired"  # the remote copy expired as configured; not uploaded again
    UNCERTAIN = "uncertain"  # could not be examined locally: neither uploaded nor deleted
    EXCLUDED = "excluded"  # tracked, but now out of the mirror's scope: left alone
    BUSY = "busy"  # an unfinished intent must be reconciled first
    DELAYED = "delayed"  # deleted locally; its remote copy goes when the delay is over


@dataclass(frozen=True)
class Action:
    """One thing to do to one path. ``row`` is the ledger's row before the action."""

    kind: ActionKind
    path: str
    reason: str
    local: LocalFile | None = None
    row: LedgerRow | None = None
    purpose: str | None = None
    expires_after: int | None = None

    @property
    def replaces(self) -> str | None:
        """The remote id this action makes obsolete (deleted after the upload commits)."""
        return self.row.file_id if self.kind is ActionKind.REPLACE and self.row else None


@dataclass(frozen=True)
class PlanOptions:
    default_purpose: str = "user_data"
    expires_after: int | None = None
    rules: tuple[PurposeRule, ...] = ()
    path_filter: PathFilter = field(default_factory=PathFilter)
    max_delete: int | None = None
    tracked_total: int | None = None  # all tracked files, when planning only some paths
    uncertain: frozenset[str] = frozenset()  # paths or directories that could not be read
    busy: frozenset[str] = frozenset()  # paths with open intents
    # Try retryable failures now even while their backoff runs: a one-shot `syncd sync`
    # is someone asking for an attempt now (the daemon's own passes honour the backoff).
    retry_waiting: bool = False
    # Try permanent failures again although the content is unchanged (`sync
    # --retry-failed`: the cause was outside the file, e.g. a server since fixed).
    retry_failed: bool = False
    # The guard's window (the daemon): deletes carried out within the last
    # ``guard_window`` seconds, counted with this plan's; and the deletes an operator
    # approved, as (path, file id), which pass the guard. ``approve_hint`` is the
    # command the refusal message names (``syncd approve-deletes FOLDER``).
    recent_deletes: int = 0
    guard_window: float = 0.0
    approved: frozenset[tuple[str, str]] = frozenset()
    approve_hint: str | None = None
    # delete_delay (seconds; 0: off) and the deletes pending, by path.
    delete_delay: float = 0.0
    pending_deletes: Mapping[str, PendingDelete] = field(default_factory=dict)
    # The folder's .syncdignore rules: an ignored tracked path is left alone, like an
    # exclude (the scan never lists ignored files).
    ignored: IgnoreRules | None = None


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]  # in order: uploads and replaces, refresh/forget, deletes
    skipped: tuple[tuple[str, Skip], ...] = ()
    refused: tuple[Action, ...] = ()
    refusal: str | None = None
    cancelled: tuple[str, ...] = ()  # pending deletes to forget (the file is back)

    def of_kind(self, *kinds: ActionKind) -> list[Action]:
        return [a for a in self.actions if a.kind in kinds]

    def skip_counts(self) -> dict[str, int]:
        # Counted by member, then named: a member's ``.value`` is a property lookup,
        # which costs on a pass that skips 100,000 unchanged files (and this runs thrice).
        counts = Counter(reason for _, reason in self.skipped)
        return {reason.value: n for reason, n in counts.items()}


_ORDER = {
    ActionKind.UPLOAD: 0,
    ActionKind.REPLACE: 0,
    ActionKind.REFRESH: 1,
    ActionKind.FORGET: 1,
    ActionKind.DEFER: 1,
    ActionKind.DELETE: 2,
}


def plan(
    local: Mapping[str, LocalFile],
    ledger: Mapping[str, LedgerRow],
    remote: Mapping[str, RemoteFile] | None,
    *,
    now: float,
    options: PlanOptions,
) -> Plan:
    """Classify every path and return the plan (see the module docstring)."""
    actions: list[Action] = []
    skipped: list[tuple[str, Skip]] = []
    still_pending: set[str] = set()
    for path in sorted(set(local) | set(ledger)):
        decision = _decide(path, local.get(path), ledger.get(path), remote, now, options)
        if isinstance(decision, Skip):
            skipped.append((path, decision))
        else:
            actions.append(decision)
        if decision is Skip.DELAYED or (
            isinstance(decision, Action) and decision.kind is ActionKind.DELETE
        ):
            still_pending.add(path)
    cancelled = tuple(
        sorted(
            p
            for p in options.pending_deletes
            if p not in still_pending and (p in local or p in ledger)
        )
    )
    actions.sort(key=lambda a: (_ORDER[a.kind], a.path))
    deletes = [
        a
        for a in actions
        if a.kind is ActionKind.DELETE
        and not (a.row is not None and (a.path, a.row.file_id) in options.approved)
    ]
    tracked = options.tracked_total
    if tracked is None:
        tracked = sum(1 for row in ledger.values() if row.file_id is not None)
    refusal = guard_message(
        len(deletes),
        tracked,
        options.max_delete,
        recent=options.recent_deletes,
        window=options.guard_window,
        hint=options.approve_hint,
    )
    if refusal is None:
        return Plan(tuple(actions), tuple(skipped), cancelled=cancelled)
    refused = {a.path for a in deletes}
    kept = tuple(a for a in actions if a.path not in refused or a.kind is not ActionKind.DELETE)
    return Plan(kept, tuple(skipped), tuple(deletes), refusal, cancelled=cancelled)


def guard_message(
    deletes: int,
    tracked: int,
    max_delete: int | None,
    *,
    recent: int = 0,
    window: float = 0.0,
    hint: str | None = None,
) -> str | None:
    """Why ``deletes`` deletions out of ``tracked`` files are refused, or None.

    ``recent`` deletes were carried out within the last ``window`` seconds: they count
    too (and were among the mirrored files). ``hint``: the approve command to name.
    """
    if hint is not None:
        override = (
            f"check the folder, then approve them with `{hint} --max {deletes}` (the "
            f"daemon may keep running), or run `syncd sync` with --max-delete {deletes}"
        )
    else:
        override = f"run again with --max-delete {deletes} to allow it"
    total, base = deletes + recent, tracked + recent
    earlier = f"the {recent} deleted in the last {format_duration(window)}"
    if max_delete is not None:
        if total > max_delete:
            limit = f"more than --max-delete {max_delete}"
            if recent:
                limit = f"{total} with {earlier}, {limit}"
            return f"refusing to delete {deletes} files ({limit}); {override}"
        return None
    if total > GUARD_MIN_DELETES and total * 2 > base:
        what = f"{deletes} of {tracked} mirrored files"
        if recent:
            what = f"{deletes} files: with {earlier} that is {total} of {base} mirrored files"
        return (
            f"refusing to delete {what} (more than half; was the folder emptied or "
            f"unmounted by mistake?); {override}"
        )
    return None


def _covered(path: str, prefixes: frozenset[str]) -> bool:
    if not prefixes:
        return False
    if "" in prefixes or path in prefixes:
        return True
    parts = path.split("/")
    return any("/".join(parts[:n]) in prefixes for n in range(1, len(parts)))


def _decide(
    path: str,
    local: LocalFile | None,
    row: LedgerRow | None,
    remote: Mapping[str, RemoteFile] | None,
    now: float,
    options: PlanOptions,
) -> Action | Skip:
    if path in options.busy:
        return Skip.BUSY
    if local is None:
        if row is None:  # cannot happen: every path comes from one of the two mappings
            return Skip.UNCHANGED
        return _decide_absent(path, row, remote, now, options)
    choice = choose_purpose(path, options.rules, options.default_purpose, options.expires_after)

    def act(kind: ActionKind, reason: str) -> Action:
        return Action(kind, path, reason, local, row, choice.purpose, choice.expires_after)

    if row is None:
        return act(ActionKind.UPLOAD, "new file")
    failed = _failed_skip(
        local, row, now, retry_waiting=options.retry_waiting, retry_failed=options.retry_failed
    )
    if row.file_id is None:
        return failed or act(ActionKind.UPLOAD, "retry after a failure")
    expired = row.expires_at is not None and row.expires_at <= now
    gone = remote is not None and row.file_id not in remote and not expired
    if same_content(local, row) and row.purpose == choice.purpose:
        if gone:
            return failed or act(ActionKind.UPLOAD, "the remote copy is gone")
        if expired:
            return Skip.EXPIRED
        if not local.same_stat(row.size, row.mtime_ns, row.inode) or row.error_kind:
            return act(ActionKind.REFRESH, "same content, new stat")
        return Skip.UNCHANGED
    if failed:
        return failed
    if gone or expired:
        return act(ActionKind.UPLOAD, "changed; the remote copy is gone")
    if row.purpose != choice.purpose and same_content(local, row):
        return act(ActionKind.REPLACE, f"purpose changed to {choice.purpose}")
    return act(ActionKind.REPLACE, "changed")


def _decide_absent(
    path: str,
    row: LedgerRow,
    remote: Mapping[str, RemoteFile] | None,
    now: float,
    options: PlanOptions,
) -> Action | Skip:
    if _covered(path, options.uncertain):
        return Skip.UNCERTAIN
    if not options.path_filter.accepts(path) or (
        options.ignored is not None and options.ignored.ignores_path(path)
    ):
        return Skip.EXCLUDED
    if row.file_id is None:
        return Action(ActionKind.FORGET, path, "never uploaded; gone locally", row=row)
    expired = row.expires_at is not None and row.expires_at <= now
    if expired or (remote is not None and row.file_id not in remote):
        return Action(ActionKind.FORGET, path, "gone locally and remotely", row=row)
    if options.delete_delay > 0:
        pending = options.pending_deletes.get(path)
        if pending is None or pending.file_id != row.file_id:
            delay = format_duration(options.delete_delay)
            return Action(ActionKind.DEFER, path, f"deleted locally; deleted in {delay}", row=row)
        if pending.due_at > now:
            return Skip.DELAYED
        return Action(ActionKind.DELETE, path, "deleted locally; its delete delay is over", row=row)
    return Action(ActionKind.DELETE, path, "deleted locally", row=row)


def same_content(local: LocalFile, row: LedgerRow) -> bool:
    """Size, then stat, then hash; any doubt is "changed"."""
    if row.sha256 is None or local.size != row.size:
        return False
    if local.same_stat(row.size, row.mtime_ns, row.inode):
        return True
    return local.sha256 is not None and local.sha256 == row.sha256


def _failed_skip(
    local: LocalFile,
    row: LedgerRow,
    now: float,
    *,
    retry_waiting: bool = False,
    retry_failed: bool = False,
) -> Skip | None:
    """Skip content that already failed: until it changes (unless ``retry_failed``), or
    until its backoff ends (unless ``retry_waiting``)."""
    if row.error_kind is None or local.size != row.failed_size:
        return None
    same_failed = local.same_stat(row.failed_size, row.failed_mtime_ns, row.failed_inode) or (
        local.sha256 is not None and local.sha256 == row.failed_sha256
    )
    if not same_failed:
        return None
    if row.error_kind == ErrorKind.PERMANENT:
        return None if retry_failed else Skip.FAILED
    if row.next_attempt_at is not None and row.next_attempt_at > now and not retry_waiting:
        return Skip.BACKOFF
    return None
