"""Settle intents whose outcome is unknown: after a lost answer, or a crash.

The Files API has no idempotency key and no metadata, so the only way to learn whether
an upload whose answer was lost stored a file is to list the remote files and prove,
from what syncd knows, which of them its request made. The rules are the pure
functions of ``syncd.sync.ownership``; this module gathers the facts and acts.

For each path with open upload intents (oldest first), a listed file is a *candidate*
when

- its filename is the name sent (or the name as the wire carries it, or its last part:
  some servers keep only the basename -- unless that last part is exactly the name of
  another path of ours, e.g. ``x.txt`` beside ``d/x.txt``, or the server is known to
  keep directories), its ``bytes`` are the intent's size;
- its ``created_at`` lies in the window of one of the path's attempts (the open intents,
  and the earlier ones closed as not stored): from the request's start to the moment
  the client gave up, or after a crash to the process's last sign of life, in server
  time (the measured clock offset, ``syncd.sync.server_clock``);
- no ledger of this host records its id: this one (tracked rows, pending deletes, kept
  candidates) nor any other (``Ledger.other_claims``, read only when a candidate exists).

A candidate is *foreign-possible* when an upload of another ledger of this host whose
outcome is open (or that adopted nothing) has a window holding it, or that ledger keeps
it as a candidate. For purposes that download (``DOWNLOADABLE_PURPOSES``) every
candidate's SHA-256 is checked first; one of no attempt's content is not syncd's.

Then ``ownership.judge`` decides. The candidates are syncd's own copies when each can
be a different attempt's (a request stores at most one file); then the newest intent
adopts the newest whose content is surely its own (the ledger row and the delete
intent of the version it replaces commit together, exactly as after a normal upload)
and the others are deleted. Every other candidate -- more of them than the attempts
could have made, one another ledger may have made, one after its sender's last sign
of life -- is kept and recorded in ``candidates`` (``syncd status`` counts them, ``syncd
ls`` marks them, ``syncd candidates --delete ID`` removes one when the user asks):
ambiguity is never resolved by deleting. An intent nothing was adopted for is closed
as not stored and the next plan uploads the path again.

The copies' delete intents and the kept candidates are committed before the upload
intents close, so that nothing stopping reconciliation half-way can leave a copy
unreferenced. Open delete intents are simply carried out again (deleting a missing
file succeeds). A copy that becomes visible only after its intent was closed as not
stored is judged the same way by ``sweep_late_copies``, which every full pass runs on
its listing (nothing may adopt then: a provable copy is deleted, others kept). Files
that match no attempt are never touched. Listing is done once per purpose, newest
first, stopping below the oldest window.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, cast

import structlog

from syncd.api import DOWNLOADABLE_PURPOSES, RemoteFile, wire_filename
from syncd.errors import FatalError, RemoteError
from syncd.remote.protocol import FilesRemote
from syncd.restore.destination import HashingWriter
from syncd.state.ledger import (
    NOT_STORED,
    CandidateRow,
    Claims,
    Intent,
    IntentKind,
    IntentState,
    Ledger,
)
from syncd.sync.ownership import (
    DEFAULT_TIME_LIMIT,
    UNMEASURED,
    Attempt,
    Candidate,
    Offset,
    Verdict,
    Window,
    judge,
    request_window,
)

__all__ = ["NOT_STORED", "ReconcileReport", "Reconciler", "filename_matches"]

log = structlog.get_logger(__name__)


@dataclass
class ReconcileReport:
    adopted: dict[str, str] = field(default_factory=dict)  # path -> adopted file id
    duplicates_deleted: list[str] = field(default_factory=list)
    deletes_finished: int = 0
    not_stored: list[str] = field(default_factory=list)  # paths whose upload must be redone
    kept: list[str] = field(default_factory=list)  # candidates kept: possibly ours
    errors: list[str] = field(default_factory=list)  # left open; retried at the next start


def filename_matches(remote_name: str, sent: str) -> bool:
    """Whether a remote file's name is what a server may have stored for ``sent``."""
    names = {sent, wire_filename(sent)}
    names |= {n.rsplit("/", 1)[-1] for n in names}
    return remote_name in names


def exact_names(sent: str) -> set[str]:
    """The names a server that keeps the whole name stores for ``sent``."""
    return {sent, wire_filename(sent)}


def name_matches(intent: Intent, remote: RemoteFile, taken: Collection[str] | None) -> bool:
    """Whether ``remote`` bears a name this upload intent's request may have stored.

    ``taken`` holds names that are exactly the names of *other* paths of this mirror: a
    remote file bearing one of them is that path's, so it is never matched by its last
    part alone (``x.txt`` is not ``d/x.txt``'s upload when ``x.txt`` is ours too).
    ``None`` matches whole names only (the server is known to keep directories).
    """
    sent = intent.filename or intent.path
    if remote.filename in exact_names(sent):
        return True
    if taken is None:
        return False
    return remote.filename not in taken and filename_matches(remote.filename, sent)


def window_of(intent: Intent, offset: Offset) -> Window:
    """The window of an upload intent (``ownership.request_window``). One closed before
    windows were recorded ends when it was closed."""
    gave_up = intent.gave_up_at
    if gave_up is None and intent.alive_at is None and intent.state is not IntentState.OPEN:
        gave_up = intent.finished_at
    return request_window(
        intent.started_at,
        offset,
        gave_up=gave_up,
        alive=intent.alive_at,
        time_limit=intent.time_limit or DEFAULT_TIME_LIMIT,
    )


@dataclass(frozen=True)
class OurNames:
    """The remote names that belong to paths of this mirror, for last-part matching."""

    owners: dict[str, str]  # exact remote name -> the path of ours it belongs to
    last_part_ok: bool  # False once the server is known to keep directories in names

    def taken_for(self, path: str) -> set[str] | None:
        """``name_matches``'s ``taken`` for an intent of ``path``."""
        if not self.last_part_ok:
            return None
        return {name for name, owner in self.owners.items() if owner != path}


class Reconciler:
    """Settles open intents of one ledger against one remote.

    ``offset`` gives the current estimate of the server's clock offset (the engine's
    ``ServerClock``); without it nothing is assumed measured (``UNMEASURED``).
    """

    def __init__(
        self,
        ledger: Ledger,
        remote: FilesRemote,
        *,
        clock: Callable[[], float] = time.time,
        offset: Callable[[], Offset] = lambda: UNMEASURED,
    ) -> None:
        self.ledger = ledger
        self.remote = remote
        self.clock = clock
        self.offset = offset
        self._claims: Claims | None = None  # other ledgers', read once per settle or sweep

    # -- settling after a lost answer or a crash --------------------------------------

    def settle(self, intents: Iterable[Intent]) -> ReconcileReport:
        """Settle these open intents. Raises FatalError; other remote errors leave the
        affected intents open and are listed in ``report.errors``."""
        report = ReconcileReport()
        self._claims = None
        uploads: list[Intent] = []
        for intent in intents:
            if intent.kind is IntentKind.DELETE:
                self.finish_delete(intent, report)
            else:
                uploads.append(intent)
        if not uploads:
            return report
        offset = self.offset()
        by_purpose: dict[str, list[Intent]] = defaultdict(list)
        for intent in uploads:
            by_purpose[intent.purpose or ""].append(intent)
        unstored: dict[str, list[Intent]] = defaultdict(list)
        for closed in self.ledger.closed_uploads(NOT_STORED, since=0.0):
            unstored[closed.path].append(closed)
        for purpose, group in sorted(by_purpose.items()):
            # Unmeasured, the server may be behind by any amount: list everything.
            oldest = min(window_of(i, offset).low for i in group) if offset.measured else 0
            try:
                listing = self._recent_files(purpose or None, oldest)
            except FatalError:
                raise
            except RemoteError as exc:
                report.errors.append(f"listing {purpose} files to reconcile: {exc}")
                continue
            offset = self.offset()  # the listing's answers measured the server's clock too
            self._settle_uploads(group, listing, report, unstored, offset)
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

    def _recent_files(self, purpose: str | None, oldest: float) -> list[RemoteFile]:
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
        offset: Offset,
    ) -> None:
        by_path: dict[str, list[Intent]] = defaultdict(list)
        for intent in sorted(group, key=lambda i: i.id):
            by_path[intent.path].append(intent)
        names = self._our_names(group)
        by_id = {r.id: r for r in listing}
        for path, intents in sorted(by_path.items()):
            newest = intents[-1]
            attempts = [*unstored.get(path, []), *intents]
            try:
                known = self.ledger.known_file_ids()
                verdict = self._judge(
                    attempts, listing, known, names.taken_for(path), offset, adopter=newest
                )
            except FatalError:
                raise
            except RemoteError as exc:  # a content check failed: try again later
                report.errors.append(f"{path}: checking a candidate's content: {exc}")
                continue
            adopted = by_id[verdict.adopt] if verdict.adopt is not None else None
            # Write-ahead: the copies' delete intents and the kept candidates commit
            # before the upload intents close, so nothing that stops us half-way (a
            # crash, a refused key) can leave a copy that nothing in the ledger names.
            pending = [self.ledger.begin_delete(path, c, now=self.clock()) for c in verdict.delete]
            self._keep(path, verdict, by_id, report)
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

    # -- the facts, and the verdict ---------------------------------------------------

    def _judge(
        self,
        attempts: Sequence[Intent],
        listing: Iterable[RemoteFile],
        known: Collection[str],
        taken: Collection[str] | None,
        offset: Offset,
        *,
        adopter: Intent | None,
    ) -> Verdict:
        """The verdict of ``ownership.judge`` on the listed files that could be these
        attempts' (of one path), ``known`` ids left out. Raises RemoteError when a
        content check fails."""
        windows = {i.id: window_of(i, offset) for i in attempts}
        files = [
            r
            for r in listing
            if r.id not in known
            and any(
                r.bytes == i.size
                and windows[i.id].holds(r.created_at)
                and name_matches(i, r, taken)
                for i in attempts
            )
        ]
        if not files:
            return Verdict()
        claims = self._other_claims()
        files = [r for r in files if r.id not in claims.file_ids]
        proof = any((i.purpose or "") in DOWNLOADABLE_PURPOSES for i in attempts)
        candidates = [
            Candidate(
                r.id,
                r.bytes,
                r.created_at,
                foreign=self._foreign_possible(r, claims, offset),
                sha256=self._content_sha256(r) if proof else None,
            )
            for r in files
        ]
        return judge(
            [Attempt(i.id, i.size or 0, i.sha256, windows[i.id]) for i in attempts],
            candidates,
            adopter=adopter.id if adopter is not None else None,
            proof=proof,
        )

    def _other_claims(self) -> Claims:
        if self._claims is None:
            self._claims = self.ledger.other_claims()
        return self._claims

    @staticmethod
    def _foreign_possible(remote: RemoteFile, claims: Claims, offset: Offset) -> bool:
        """Another ledger of this host keeps it as a candidate, or an upload of theirs
        whose outcome is open (or that adopted nothing) may have stored it."""
        if remote.id in claims.doubtful:
            return True
        return any(
            upload.size == remote.bytes
            and filename_matches(remote.filename, upload.filename)
            and request_window(
                upload.started_at,
                offset,
                gave_up=upload.gave_up_at,
                alive=upload.alive_at,
                time_limit=upload.time_limit or DEFAULT_TIME_LIMIT,
            ).holds(remote.created_at)
            for upload in claims.uploads
        )

    def _content_sha256(self, remote: RemoteFile) -> str:
        """The SHA-256 of a candidate's content (only for purposes that download)."""
        sink = HashingWriter(None)
        self.remote.download(remote.id, cast(BinaryIO, sink), expected_bytes=remote.bytes)
        return sink.hexdigest()

    def _keep(
        self,
        path: str,
        verdict: Verdict,
        by_id: dict[str, RemoteFile],
        report: ReconcileReport,
    ) -> None:
        now = self.clock()
        rows = []
        for file_id, doubt in sorted(verdict.keep.items()):
            remote = by_id[file_id]
            rows.append(
                CandidateRow(
                    file_id=file_id,
                    path=path,
                    filename=remote.filename,
                    bytes=remote.bytes,
                    created_at=remote.created_at,
                    purpose=remote.purpose,
                    reason=doubt.value,
                    found_at=now,
                )
            )
            report.kept.append(file_id)
            log.warning(
                "possibly_ours_kept",
                path=path,
                file_id=file_id,
                reason=doubt.value,
                action="reconcile",
            )
        self.ledger.record_candidates(rows)

    # -- late copies -------------------------------------------------------------------

    def sweep_late_copies(self, listing: Iterable[RemoteFile]) -> ReconcileReport:
        """Judge files that became visible after their upload was closed as not stored.

        A server may show a file only some time after it stamped it (its request was
        still being carried out when reconciliation listed). A full pass hands its
        remote listing here: for each path without open intents, the files that could
        be one of its not-stored uploads' (in its window, name and size, known to no
        ledger of this host) are judged like ``settle`` does, except that nothing is
        adopted (the path was uploaded again): a provable copy is deleted, a delete
        intent first; the others are kept as candidates. Candidates no longer listed
        are forgotten. Raises FatalError.
        """
        report = ReconcileReport()
        self._claims = None
        files = list(listing)
        self._forget_vanished_candidates(files)
        busy = {i.path for i in self.ledger.open_intents()}
        by_path: dict[str, list[Intent]] = defaultdict(list)
        for intent in self.ledger.closed_uploads(NOT_STORED, since=0.0):  # pruned after a week
            if intent.path not in busy:
                by_path[intent.path].append(intent)
        if not by_path:
            return report
        known = self.ledger.known_file_ids()
        by_name: dict[str, list[RemoteFile]] = defaultdict(list)
        for remote in files:
            if remote.id not in known:  # what the ledger knows is never a late copy
                by_name[remote.filename].append(remote)
        nearby: dict[str, list[RemoteFile]] = {}
        for path, attempts in sorted(by_path.items()):
            wanted = set().union(*(exact_names(i.filename or i.path) for i in attempts))
            wanted |= {n.rsplit("/", 1)[-1] for n in wanted}
            sizes = {i.size for i in attempts}
            near = [r for name in sorted(wanted) for r in by_name.get(name, [])]
            if any(r.bytes in sizes for r in near):  # the judge looks no further otherwise
                nearby[path] = near
        if not nearby:  # the usual full pass: no unknown file is like a failed upload
            return report
        offset = self.offset()
        names = self._our_names([i for group in by_path.values() for i in group])
        by_id = {r.id: r for r in files}
        for path, near in nearby.items():
            attempts = by_path[path]
            try:
                verdict = self._judge(
                    attempts, near, known, names.taken_for(path), offset, adopter=None
                )
            except FatalError:
                raise
            except RemoteError as exc:
                report.errors.append(f"{path}: checking a candidate's content: {exc}")
                continue
            known = {*known, *verdict.delete, *verdict.keep}
            pending = [self.ledger.begin_delete(path, c, now=self.clock()) for c in verdict.delete]
            self._keep(path, verdict, by_id, report)
            for delete in pending:
                if self.finish_delete(delete, report):
                    report.duplicates_deleted.append(delete.file_id or "")
                    log.info(
                        "late_copy_deleted", path=path, file_id=delete.file_id, action="reconcile"
                    )
        return report

    def _forget_vanished_candidates(self, listing: Sequence[RemoteFile]) -> None:
        listed = {r.id for r in listing}
        recorded = self.ledger.candidates(dismissed=True)
        gone = [c.file_id for c in recorded if c.file_id not in listed]
        if gone:
            self.ledger.forget_candidates(gone)

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
