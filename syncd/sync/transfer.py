"""One action carried out, with its intent: an upload (or replace), a delete, a ledger fix.

``Transfers`` is what the engine's workers call, many at once (thread-safe). Each method
returns an ``Outcome`` and records everything in the ledger; none of them raises for a
per-file problem. The steps of an upload:

1. stat the file again (gone: ``VANISHED``); check its size and name for the purpose;
2. hash it if its stat moved since the scan, check its JSON Lines if the purpose needs
   them (a failed check is permanent for this content);
3. commit the upload intent (``upload.intent``), send it (``POST /files``, or the
   Uploads API in parts for a large file), and commit the outcome with the path's new
   row and a delete intent for the version it replaces (``upload.committed``);
4. a replace then deletes the old version (``replace.old_deleted``; a failure leaves
   the intent open, finished at the next start).

A lost answer (``AmbiguousError``) leaves the intent open, with the moment the client
gave up (the end of its window, ``syncd.sync.ownership``), and returns ``AMBIGUOUS``:
the engine reconciles. A confirmed upload's ``created_at`` is a sample of the server's
clock (``ServerClock.note_upload``). A file that changed while it was sent returns ``CHANGED`` (the
client cut the body short, so nothing was stored) or ``DONE`` with ``stale`` (stored; the
row has no hash, so the next plan uploads it again). Every failure is recorded with its
backoff (``Ledger.record_failure``) and its content noted for the delete holds.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from syncd.api import JSONL_PURPOSES, RemoteFile
from syncd.config import MirrorConfig
from syncd.errors import (
    AmbiguousError,
    FatalError,
    FileChangedError,
    RemoteError,
    StoppedError,
    Verdict,
)
from syncd.local.fingerprint import Fingerprint
from syncd.local.scan import current_fingerprint
from syncd.local.validate import check_jsonl, check_name, check_size
from syncd.remote.protocol import FilesRemote
from syncd.state.ledger import Ledger, LedgerRow
from syncd.sync.holds import FailedContent
from syncd.sync.multipart import MultipartJob, MultipartUploader
from syncd.sync.ownership import DEFAULT_TIME_LIMIT
from syncd.sync.plan import Action, ActionKind
from syncd.sync.result import Outcome, OutcomeStatus
from syncd.sync.server_clock import ServerClock
from syncd.sync.steps import StepHook, no_step

HASH_ATTEMPTS = 3

log = structlog.get_logger(__name__)


class Transfers:
    """Carries out single actions for one mirror (see the module docstring)."""

    def __init__(
        self,
        mirror: MirrorConfig,
        ledger: Ledger,
        remote: FilesRemote,
        multipart: MultipartUploader | None,
        *,
        failed: FailedContent,
        server_clock: ServerClock | None = None,
        time_limit: Callable[[int], float] = lambda size: DEFAULT_TIME_LIMIT,
        clock: Callable[[], float] = time.time,
        step: StepHook = no_step,
    ) -> None:
        """``time_limit(size)`` is recorded in every upload intent: how long after the
        process's last sign of life its request of ``size`` bytes could still be received
        (the request's own deadline)."""
        self.mirror = mirror
        self.server_clock = server_clock
        self.time_limit = time_limit
        self.ledger = ledger
        self.remote = remote
        self.multipart = multipart
        self.failed = failed
        self.clock = clock
        self.step = step
        self._lock = threading.Lock()
        self._sent: dict[str, Fingerprint] = {}  # this pass: what each upload sent

    def new_pass(self) -> None:
        with self._lock:
            self._sent.clear()

    def sent(self, path: str) -> Fingerprint | None:
        """What this pass's upload of ``path`` sent (None if none was sent)."""
        with self._lock:
            return self._sent.get(path)

    # -- uploads -------------------------------------------------------------------------

    def transfer(self, action: Action) -> Outcome:
        """Upload (or replace) one file; see the module docstring for the steps."""
        full = self.mirror.folder / action.path
        purpose = action.purpose or self.mirror.purpose
        st = self._stat(full)
        if st is None:
            return Outcome(action, OutcomeStatus.VANISHED, reason="vanished before upload")
        stat_fp = Fingerprint(st.st_size, st.st_mtime_ns, st.st_ino, None)
        problem = check_size(st.st_size, purpose, self.mirror.limits) or check_name(
            action.path, purpose
        )
        if problem:
            return self.fail(action, stat_fp, problem, permanent=True)
        try:
            fingerprint = current_fingerprint(full, action.local, st, attempts=HASH_ATTEMPTS)
            if purpose in JSONL_PURPOSES:
                problem = check_jsonl(full, purpose, self.mirror.limits)
        except FileNotFoundError:
            return Outcome(action, OutcomeStatus.VANISHED, reason="vanished before upload")
        except FileChangedError:
            return self.fail(action, stat_fp, "kept changing while it was read; will retry")
        except OSError as exc:
            return self.fail(action, stat_fp, f"cannot read: {exc.strerror or exc}")
        if problem:
            return self.fail(action, fingerprint, problem, permanent=True)
        if action.kind is ActionKind.REPLACE and _same_as_mirrored(
            action.row, fingerprint, purpose
        ):
            self.ledger.refresh(action.path, fingerprint)
            return Outcome(action, OutcomeStatus.REFRESHED, reason="same content after all")
        return self._upload(action, full, purpose, fingerprint)

    def _upload(self, action: Action, full: Path, purpose: str, fp: Fingerprint) -> Outcome:
        with self._lock:
            self._sent[action.path] = fp
        started = self.clock()
        intent_id = self.ledger.begin_upload(
            action.path,
            fp,
            filename=action.path,
            purpose=purpose,
            expires_after=action.expires_after,
            replaces=action.replaces,
            now=started,
            time_limit=self.time_limit(fp.size),
        )
        self.step("upload.intent", action.path)
        attempt = (action.row.attempts if action.row else 0) + 1
        try:
            remote = self._send_file(action, full, purpose, fp)
        except AmbiguousError as exc:
            self.ledger.record_gave_up(intent_id, now=self.clock())
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
            return Outcome(
                action, OutcomeStatus.FATAL, reason=str(exc), attempt=attempt, fatal_cause=exc.cause
            )
        except StoppedError as exc:  # a stop while it waited to be sent: nothing stored
            self.ledger.abandon_intent(intent_id, str(exc), now=self.clock())
            return Outcome(action, OutcomeStatus.NOT_RUN, reason=str(exc))
        except RemoteError as exc:
            if exc.verdict is Verdict.RETRYABLE and self._moved(full, fp):
                # The client stops a body whose file changed size mid-way, so the server
                # stored nothing: not a failure, the new content is handled again.
                self.ledger.abandon_intent(intent_id, "changed while sent", now=self.clock())
                return Outcome(action, OutcomeStatus.CHANGED, reason="changed while uploading")
            return self.fail(
                action,
                fp,
                str(exc),
                permanent=exc.verdict is not Verdict.RETRYABLE,
                intent_id=intent_id,
                retry_after=exc.retry_after,
                attempt=attempt,
            )
        except OSError as exc:
            if self._stat(full) is None:  # gone (deleted, moved away) before it was read
                self.ledger.abandon_intent(intent_id, "vanished before upload", now=self.clock())
                return Outcome(action, OutcomeStatus.VANISHED, reason="vanished before upload")
            return self.fail(
                action,
                fp,
                f"cannot read: {exc.strerror or exc}",
                intent_id=intent_id,
                attempt=attempt,
            )
        if self.server_clock is not None:
            self.server_clock.note_upload(started, self.clock(), remote.created_at)
        self.step("upload.sent", action.path)
        stale = self._moved(full, fp)
        deletes = self.ledger.complete_upload(intent_id, remote, stale=stale, now=self.clock())
        self.step("upload.committed", action.path)
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
        # Exactly the recorded size: a file that grew or shrank since it was hashed is
        # never stored whole, so a lost answer's copy has the size its intent says.
        return self.remote.upload(full, action.path, purpose, action.expires_after, size=fp.size)

    # -- deletes -------------------------------------------------------------------------

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

    def delete(self, action: Action) -> Outcome:
        """Delete syncd's remote copy of a path deleted locally, intent first."""
        file_id = action.row.file_id if action.row else None
        if file_id is None:
            return Outcome(action, OutcomeStatus.NOT_RUN, reason="nothing to delete")
        intent = self.ledger.begin_delete(action.path, file_id, now=self.clock())
        self.step("delete.intent", action.path)
        try:
            self.remote.delete(file_id)
            self.step("delete.sent", action.path)
        except FatalError as exc:
            return Outcome(action, OutcomeStatus.FATAL, reason=str(exc), fatal_cause=exc.cause)
        except StoppedError as exc:  # a stop while it waited to be sent: nothing deleted
            self.ledger.abandon_intent(intent.id, str(exc), now=self.clock())
            return Outcome(action, OutcomeStatus.NOT_RUN, reason=str(exc), file_id=file_id)
        except RemoteError as exc:
            return Outcome(action, OutcomeStatus.FAILED, reason=str(exc), file_id=file_id)
        self.ledger.complete_delete(intent.id, now=self.clock())
        return Outcome(action, OutcomeStatus.DONE, file_id=file_id)

    # -- the ledger alone ----------------------------------------------------------------

    def fix_ledger(self, actions: Sequence[Action]) -> list[Outcome]:
        """Refresh the stats of touched files (in one transaction) and forget rows whose
        file is gone on both sides."""
        refreshed = [a for a in actions if a.kind is ActionKind.REFRESH and a.local is not None]
        self.ledger.refresh_many(
            [(a.path, a.local.fingerprint()) for a in refreshed if a.local is not None]
        )
        outcomes = [Outcome(a, OutcomeStatus.REFRESHED) for a in refreshed]
        for action in actions:
            if action.kind is ActionKind.FORGET:
                self.ledger.forget(action.path, action.row.file_id if action.row else None)
                outcomes.append(Outcome(action, OutcomeStatus.DONE))
        return outcomes

    def fail(
        self,
        action: Action,
        fingerprint: Fingerprint | None,
        reason: str,
        *,
        permanent: bool = False,
        intent_id: int | None = None,
        retry_after: float | None = None,
        attempt: int = 1,
    ) -> Outcome:
        """Record that this content of the path failed (with its backoff) and note it for
        the delete holds; the ``FAILED`` outcome."""
        fp = fingerprint or (action.local.fingerprint() if action.local else None)
        self.failed.add(fp)
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
        return Outcome(
            action, OutcomeStatus.FAILED, reason=reason, permanent=permanent, attempt=attempt
        )

    # -- helpers -------------------------------------------------------------------------

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
