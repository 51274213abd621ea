"""Settle intents whose outcome is unknown: after a lost answer, or a crash.

The Files API has no idempotency key, so the only way to learn whether an upload whose
answer was lost stored a file is to list the remote files and match. For each path with
open upload intents (oldest first):

- a remote file *matches* an intent when its filename is the name sent (or the name as
  the wire carries it, or its last part: some servers keep only the basename -- unless
  that last part is exactly the name of another path of ours, e.g. ``x.txt`` beside
  ``d/x.txt``), its
  ``bytes`` equal the intent's size, it was created no earlier than the intent's start
  minus ``CLOCK_SKEW_MARGIN``, and the ledger does not already know its id;
- the newest intent adopts the newest file matching it: the ledger row and the delete
  intent for the replaced version commit together, exactly as after a normal upload --
  unless that file might hold other content: a match that an earlier upload of the
  path with the same size and another hash could have stored (an older open intent, or
  one closed as not stored, late) is never adopted;
- every other file matching any of the path's intents is provably a copy syncd made
  (one request per intent, never retried blind), so it is deleted;
- an intent nothing matches stored nothing: it is closed, and the next plan uploads
  the path again.

The copies' delete intents are committed before the adoption closes the upload intents,
so that nothing stopping reconciliation half-way can leave a copy unreferenced. Open
delete intents are simply carried out again (deleting a missing file succeeds). A copy
the server stores *after* an intent was closed as not stored (its request was still
being carried out) is removed by ``sweep_late_copies``, which every full pass runs on its
listing. Files that match no intent are never touched. Listing is done once per purpose, newest
first, stopping at the oldest intent's start minus the margin.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

import structlog

from syncd.api import RemoteFile, wire_filename
from syncd.errors import FatalError, RemoteError
from syncd.remote.protocol import FilesRemote
from syncd.state.ledger import Intent, IntentKind, IntentState, Ledger

CLOCK_SKEW_MARGIN = 120.0
# How long after reconciliation found nothing a late copy may still appear (a request
# the server went on carrying out after its client died or gave up on it).
LATE_COPY_WINDOW = 900.0
NOT_STORED = "superseded or not stored"  # the outcome of upload intents that stored nothing

log = structlog.get_logger(__name__)


@dataclass
class ReconcileReport:
    adopted: dict[str, str] = field(default_factory=dict)  # path -> adopted file id
    duplicates_deleted: list[str] = field(default_factory=list)
    deletes_finished: int = 0
    not_stored: list[str] = field(default_factory=list)  # paths whose upload must be redone
    errors: list[str] = field(default_factory=list)  # left open; retried at the next start


def filename_matches(remote_name: str, sent: str) -> bool:
    """Whether a remote file's name is what a server may have stored for ``sent``."""
    names = {sent, wire_filename(sent)}
    names |= {n.rsplit("/", 1)[-1] for n in names}
    return remote_name in names


def exact_names(sent: str) -> set[str]:
    """The names a server that keeps the whole name stores for ``sent``."""
    return {sent, wire_filename(sent)}


def matches(
    intent: Intent,
    remote: RemoteFile,
    known: set[str],
    taken: Collection[str] | None = frozenset(),
) -> bool:
    """Whether ``remote`` could be the file this upload intent stored.

    ``taken`` holds names that are exactly the names of *other* paths of this mirror: a
    remote file bearing one of them is that path's, so it is never matched by its last
    part alone (``x.txt`` is not ``d/x.txt``'s upload when ``x.txt`` is ours too).
    ``None`` matches whole names only (the server is known to keep directories).
    """
    if (
        remote.id in known
        or remote.bytes != intent.size
        or remote.created_at < intent.started_at - CLOCK_SKEW_MARGIN
    ):
        return False
    sent = intent.filename or intent.path
    if remote.filename in exact_names(sent):
        return True
    if taken is None:
        return False
    return remote.filename not in taken and filename_matches(remote.filename, sent)


@dataclass(frozen=True)
class OurNames:
    """The remote names that belong to paths of this mirror, for last-part matching."""

    owners: dict[str, str]  # exact remote name -> the path of ours it belongs to
    last_part_ok: bool  # False once the server is known to keep directories in names

    def taken_for(self, path: str) -> set[str] | None:
        """``matches``'s ``taken`` for an intent of ``path``."""
        if not self.last_part_ok:
            return None
        return {name for name, owner in self.owners.items() if owner != path}


def _within_late_window(intent: Intent, remote: RemoteFile) -> bool:
    """Whether ``intent`` may still have stored ``remote``: always while it is open; for a
    closed one, only up to ``LATE_COPY_WINDOW`` after it was closed."""
    if intent.state is IntentState.OPEN:
        return True
    return remote.created_at <= (intent.finished_at or intent.started_at) + LATE_COPY_WINDOW


class Reconciler:
    """Settles open intents of one ledger against one remote."""

    def __init__(
        self, ledger: Ledger, remote: FilesRemote, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.ledger = ledger
        self.remote = remote
        self.clock = clock

    def settle(self, intents: Iterable[Intent]) -> ReconcileReport:
        """Settle these open intents. Raises FatalError; other remote errors leave the
        affected intents open and are listed in ``report.errors``."""
        report = ReconcileReport()
        uploads: list[Intent] = []
        for intent in intents:
            if intent.kind is IntentKind.DELETE:
                self.finish_delete(intent, report)
            else:
                uploads.append(intent)
        by_purpose: dict[str, list[Intent]] = defaultdict(list)
        for intent in uploads:
            by_purpose[intent.purpose or ""].append(intent)
        unstored: dict[str, list[Intent]] = defaultdict(list)
        if uploads:
            for closed in self.ledger.closed_uploads(NOT_STORED, since=0.0):
                unstored[closed.path].append(closed)
        for purpose, group in sorted(by_purpose.items()):
            try:
                listing = self._recent_files(purpose or None, group)
            except FatalError:
                raise
            except RemoteError as exc:
                report.errors.append(f"listing {purpose} files to reconcile: {exc}")
                continue
            self._settle_uploads(group, listing, report, unstored)
        return report

    def finish_delete(self, intent: Intent, report: ReconcileReport) -> bool:
        """Carry out a delete intent (again); True when it is done."""
        if intent.file_id is None:
            self.ledger.abandon_intent(intent.id, "no file id", now=self.clock())
            return True
        try:
            self.remote.delete(intent.file_id)
        except FatalError:
            raise
        except RemoteError as exc:
            report.errors.append(f"{intent.path}: delete {intent.file_id}: {exc}")
            return False
        self.ledger.complete_delete(intent.id, now=self.clock())
        report.deletes_finished += 1
        return True

    def _recent_files(self, purpose: str | None, group: list[Intent]) -> list[RemoteFile]:
        oldest = min(i.started_at for i in group) - CLOCK_SKEW_MARGIN
        found: list[RemoteFile] = []
        for remote in self.remote.list_files(purpose=purpose, order="desc"):
            if remote.created_at < oldest:
                break  # newest first: nothing older can match
            found.append(remote)
        return found

    def _settle_uploads(
        self,
        group: list[Intent],
        listing: list[RemoteFile],
        report: ReconcileReport,
        unstored: dict[str, list[Intent]],
    ) -> None:
        by_path: dict[str, list[Intent]] = defaultdict(list)
        for intent in sorted(group, key=lambda i: i.id):
            by_path[intent.path].append(intent)
        names = self._our_names(group)
        for path, intents in sorted(by_path.items()):
            known = self.ledger.known_file_ids()
            taken = names.taken_for(path)
            newest = intents[-1]
            mine = sorted(
                (r for r in listing if matches(newest, r, known, taken)),
                key=lambda r: (r.created_at, r.id),
            )
            # A match that an earlier upload of other content (same size) of this path
            # could have stored -- an older open intent, or a late copy of one closed as
            # not stored -- has doubtful content: it is deleted, never adopted.
            rivals = [
                i
                for i in [*intents[:-1], *unstored.get(path, [])]
                if i.size == newest.size
                and (i.sha256 is None or newest.sha256 is None or i.sha256 != newest.sha256)
            ]
            doubtful = {
                r.id
                for r in mine
                for rival in rivals
                if matches(rival, r, known, taken) and _within_late_window(rival, r)
            }
            safe = [r for r in mine if r.id not in doubtful]
            adopted = safe[-1] if safe else None
            copies = sorted(
                {
                    r.id
                    for r in listing
                    if (adopted is None or r.id != adopted.id)
                    and any(matches(i, r, known, taken) for i in intents)
                }
            )
            # Write-ahead: the copies' delete intents commit before the upload intents
            # close, so nothing that stops us half-way (a crash, a refused key) can leave
            # a copy that no open intent refers to.
            pending = [self.ledger.begin_delete(path, c, now=self.clock()) for c in copies]
            now = self.clock()
            replaced: list[Intent] = []
            for intent in intents:
                if intent is newest and adopted is not None:
                    replaced = self.ledger.complete_upload(intent.id, adopted, stale=False, now=now)
                    report.adopted[path] = adopted.id
                    log.info("adopted", path=path, file_id=adopted.id, action="reconcile")
                else:
                    self.ledger.abandon_intent(intent.id, NOT_STORED, now=now)
            if adopted is None:
                report.not_stored.append(path)
            for delete in pending:
                if self.finish_delete(delete, report):
                    report.duplicates_deleted.append(delete.file_id or "")
                    log.info(
                        "duplicate_deleted", path=path, file_id=delete.file_id, action="reconcile"
                    )
            for delete in replaced:
                self.finish_delete(delete, report)

    def sweep_late_copies(self, listing: Iterable[RemoteFile]) -> ReconcileReport:
        """Delete copies stored after reconciliation had found that nothing was.

        A request can still be carried out after its client gave up on it (the process
        was killed while the server was storing the file; a proxy finished it later).
        Its copy then appears after ``settle`` closed the intent as not stored and the
        path was uploaded again: a duplicate no intent refers to. A full pass hands its
        remote listing here: a file the ledger does not know that matches an upload intent
        closed as not stored, created no later than ``LATE_COPY_WINDOW`` after that
        decision, is that request's copy (provably syncd's) and is deleted, a delete
        intent first. Paths with open intents are left to ``settle``. Raises FatalError.
        """
        report = ReconcileReport()
        busy = {i.path for i in self.ledger.open_intents()}
        unstored = [  # every one the ledger still keeps (the engine prunes after a week)
            i for i in self.ledger.closed_uploads(NOT_STORED, since=0.0) if i.path not in busy
        ]
        if not unstored:
            return report
        known = self.ledger.known_file_ids()
        names = self._our_names(unstored)
        by_name: dict[str, list[RemoteFile]] = defaultdict(list)
        for remote in listing:
            if remote.id not in known:
                by_name[remote.filename].append(remote)
        for intent in unstored:
            sent = intent.filename or intent.path
            taken = names.taken_for(intent.path)
            candidates = exact_names(sent)
            candidates |= {n.rsplit("/", 1)[-1] for n in candidates}
            for name in sorted(candidates):
                for remote in by_name.get(name, []):
                    if remote.id in known or not _within_late_window(intent, remote):
                        continue
                    if matches(intent, remote, known, taken):
                        known.add(remote.id)
                        self._delete_late_copy(intent.path, remote.id, report)
        return report

    def _delete_late_copy(self, path: str, file_id: str, report: ReconcileReport) -> None:
        delete = self.ledger.begin_delete(path, file_id, now=self.clock())
        if self.finish_delete(delete, report):
            report.duplicates_deleted.append(file_id)
            log.info("late_copy_deleted", path=path, file_id=file_id, action="reconcile")

    def _our_names(self, intents: list[Intent]) -> OurNames:
        """Who owns which remote name, and whether last-part matching is allowed at all.

        Only worked out when a name could match by its last part (some intent's name has
        a directory). Then a tracked nested path whose remote copy kept its directory
        shows that the server keeps whole names: last parts are never matched. Otherwise
        the owners are every tracked path, the paths of every open upload intent (not
        only those being settled), and of uploads closed as not stored (their late
        copies may still appear).
        """
        owners: dict[str, str] = {}
        if any("/" in (i.filename or i.path) for i in intents):
            rows = self.ledger.rows()
            if any(
                "/" in path and row.remote_filename and "/" in row.remote_filename
                for path, row in rows.items()
            ):
                return OurNames({}, last_part_ok=False)
            for path in rows:
                owners.update(dict.fromkeys(exact_names(path), path))
            for pending in self.ledger.open_intents():  # those of other passes too
                if pending.kind is IntentKind.UPLOAD:
                    sent = pending.filename or pending.path
                    owners.update(dict.fromkeys(exact_names(sent), pending.path))
            for closed in self.ledger.closed_uploads(NOT_STORED, since=0.0):
                owners.update(
                    dict.fromkeys(exact_names(closed.filename or closed.path), closed.path)
                )
        for intent in intents:
            owners.update(dict.fromkeys(exact_names(intent.filename or intent.path), intent.path))
        return OurNames(owners, last_part_ok=True)
