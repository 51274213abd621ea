"""``syncd pull``: bringing mirrored files back, safely, into a destination folder.

Each file goes through ``syncd.destination.Destination``: nothing is ever written
outside DEST, no link below it is followed, and a target is replaced atomically by a
complete, checked download or not at all. On top of that:

- the download is hashed while it streams and checked against the expected size and
  SHA-256 before it replaces anything;
- an existing regular file that differs is kept unless ``overwrite`` is set; a full
  or read-only disk, or a rejected key, stops the pull (remaining files: ``NOT_TRIED``).

A file counts as already there when its size and SHA-256 match (ledger pulls), or its
size and mtime match the remote file's (``--all``, whose listing carries no hash; the
mtime is set to the remote ``created_at`` when the file is written, as rclone does).
A ledger pull restores each file's recorded mtime.

Files whose purpose the API does not serve (``syncd.api.may_download``, decided from the
ledger row's purpose, or the listing's for ``--all``) are never asked for: they end
``NOT_DOWNLOADABLE`` with nothing written, as does a file the server refuses with a
400 (``syncd.restore.undownloadable``). A ledger file already in DEST with the right
content still counts as already there.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from syncd.api import RemoteFile, may_download
from syncd.errors import (
    ConfigError,
    ContentMismatchError,
    FatalError,
    NotFoundError,
    PullCancelledError,
    RefusedName,
    RemoteError,
    StoppedError,
    UnsafePathError,
)
from syncd.paths import LEDGER_SUFFIX, default_state_dir, find_ledgers, ledger_path
from syncd.remote.protocol import FilesRemote, SupportsStop
from syncd.restore.destination import Destination, HashingWriter, describe_mode
from syncd.restore.names import (
    Refusal,
    check_relative,
    describe,
    place_remote_files,
    with_id_suffix,
)
from syncd.restore.undownloadable import (
    Undownloadable,
    is_refusal,
    not_allowed_reason,
)
from syncd.state.ledger import LedgerRow

_STOPPING_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


class PullOutcome(StrEnum):
    PULLED = "pulled"
    SAME = "same"  # already identical: nothing downloaded
    KEPT = "kept"  # a different local file is in the way and was kept
    FAILED = "failed"
    NOT_TRIED = "not_tried"  # the pull stopped before this file (disk full, bad key, ^C)
    NOT_DOWNLOADABLE = "not_downloadable"  # the API does not serve this file's content


@dataclass(frozen=True)
class PullItem:
    """One file to bring back: its remote id and what its content must be.

    ``sha256`` None means the content cannot be checked beyond its size (``--all``, or a
    ledger row without a hash); ``mtime_ns`` is given to the written file; ``purpose``
    (None: not recorded) decides whether the content is asked for at all.
    """

    path: str
    file_id: str
    size: int
    sha256: str | None = None
    mtime_ns: int | None = None
    notes: tuple[str, ...] = ()
    purpose: str | None = None


@dataclass(frozen=True)
class PullResult:
    item: PullItem
    outcome: PullOutcome
    message: str = ""
    bytes: int = 0
    duration: float = 0.0


class PullListener(Protocol):
    """Progress reporting; called from worker threads."""

    def advanced(self, nbytes: int) -> None: ...

    def finished(self, result: PullResult) -> None: ...


# -- what to pull ------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A file that will not be pulled, and why (said once, before the pull starts)."""

    path: str
    reason: str
    error: bool  # True: the destination will lack something it should have


def ledger_items(rows: Mapping[str, LedgerRow]) -> tuple[list[PullItem], list[Skipped]]:
    """What a ledger pull brings back: every row with a remote file, checked by hash."""
    items: list[PullItem] = []
    skipped: list[Skipped] = []
    for path in sorted(rows):
        row = rows[path]
        try:
            check_relative(path)
        except RefusedName as exc:
            skipped.append(Skipped(path, f"not a safe path in the ledger ({exc}); refused", True))
            continue
        if row.file_id is None:
            reason = (
                f"never mirrored (last error: {row.last_error})"
                if row.last_error
                else ("never mirrored")
            )
            skipped.append(Skipped(path, reason + "; nothing to pull", False))
            continue
        if row.sha256 is None:  # the file changed while it was uploaded: size only
            size = row.remote_bytes if row.remote_bytes is not None else row.size or 0
            note = "the ledger has no hash of this version; checked by size only"
            items.append(PullItem(path, row.file_id, size, None, None, (note,), row.purpose))
            continue
        items.append(
            PullItem(path, row.file_id, row.size or 0, row.sha256, row.mtime_ns, (), row.purpose)
        )
    return items, skipped


def split_downloadable(
    files: Sequence[RemoteFile], *, ask_all: bool = False
) -> tuple[list[RemoteFile], list[PullResult]]:
    """``pull --all``: the remote files whose content may be asked for (all of them with
    ``ask_all``), and a ``NOT_DOWNLOADABLE`` result for each of the others (no name is
    placed for them, so they take none from a file that is written)."""
    wanted: list[RemoteFile] = []
    refused: list[PullResult] = []
    for remote in files:
        if ask_all or may_download(remote.purpose):
            wanted.append(remote)
            continue
        item = PullItem(remote.filename, remote.id, remote.bytes, purpose=remote.purpose)
        refused.append(
            PullResult(item, PullOutcome.NOT_DOWNLOADABLE, not_allowed_reason(remote.purpose))
        )
    return wanted, refused


def _same_by_mtime(st: os.stat_result | None, size: int, mtime_ns: int) -> bool:
    return (
        st is not None
        and stat.S_ISREG(st.st_mode)
        and st.st_size == size
        and st.st_mtime_ns == mtime_ns
    )


def remote_items(
    files: Sequence[RemoteFile], dest: Destination
) -> tuple[list[PullItem], list[Refusal]]:
    """What ``pull --all`` brings back: every remote file under a cleaned, distinct name
    (``syncd.restore.names``); a name held in DEST by a different file gets the id suffix."""
    placements, refused = place_remote_files(files)
    taken = {p.path for p in placements}
    items: list[PullItem] = []
    for placement in placements:
        remote = placement.file
        mtime_ns = remote.created_at * 1_000_000_000
        path, notes = placement.path, list(placement.notes)
        try:
            st = dest.lstat(path)
        except (UnsafePathError, OSError):
            st = None  # the worker meets the same problem and reports it for this file
        if st is not None and not _same_by_mtime(st, remote.bytes, mtime_ns):
            attempt = 1
            while True:
                candidate = with_id_suffix(placement.path, remote.id, attempt)
                try:
                    there = dest.lstat(candidate)
                except (UnsafePathError, OSError):
                    there = None
                if candidate not in taken and (
                    there is None or _same_by_mtime(there, remote.bytes, mtime_ns)
                ):
                    break
                attempt += 1
            notes.append(f"a different file is at {path!r} already; written as {candidate!r}")
            taken.add(candidate)
            path = candidate
        items.append(
            PullItem(path, remote.id, remote.bytes, None, mtime_ns, tuple(notes), remote.purpose)
        )
    return items, refused


# -- pulling ------------------------------------------------------------------------------


class Puller:
    """Brings ``items`` into ``dest`` with ``concurrency`` threads sharing ``remote``.

    Per-file problems become ``PullResult``s and never stop the other files, except a
    full or read-only disk and a rejected key, which stop the pull (the files not yet
    started are ``NOT_TRIED``). ``stop()`` (from a signal handler) does the same.
    ``ask_all`` asks for every file's content whatever its purpose (for a server that
    serves them all); a refusal is then still ``NOT_DOWNLOADABLE``.
    """

    def __init__(
        self,
        remote: FilesRemote,
        dest: Destination,
        listener: PullListener,
        *,
        concurrency: int = 8,
        overwrite: bool = False,
        ask_all: bool = False,
    ) -> None:
        self.remote = remote
        self.dest = dest
        self.listener = listener
        self.concurrency = max(1, concurrency)
        self.overwrite = overwrite
        self.ask_all = ask_all
        self._stop = threading.Event()
        self._stop_reason = ""
        self._stop_lock = threading.Lock()

    def stop(self, reason: str) -> None:
        with self._stop_lock:
            if not self._stop.is_set():
                self._stop_reason = reason
                self._stop.set()
        if isinstance(self.remote, SupportsStop):  # no download waits out a pacing delay
            self.remote.interrupt_waits()

    def run(self, items: Sequence[PullItem]) -> list[PullResult]:
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="pull") as pool:
            futures = [pool.submit(self._pull_reported, item) for item in items]
            try:
                return [future.result() for future in futures]
            except KeyboardInterrupt:
                self.stop("interrupted")
                for future in futures:
                    future.cancel()
                raise

    def _pull_reported(self, item: PullItem) -> PullResult:
        result = self._pull(item)
        self.listener.finished(result)
        return result

    def _pull(self, item: PullItem) -> PullResult:
        if self._stop.is_set():
            return PullResult(item, PullOutcome.NOT_TRIED, self._stop_reason)
        started = time.monotonic()
        try:
            there = self.dest.lstat(item.path)
            if there is not None:
                if not stat.S_ISREG(there.st_mode):
                    return PullResult(
                        item,
                        PullOutcome.FAILED,
                        f"is {describe_mode(there.st_mode)} in the destination; kept",
                    )
                try:
                    same = self._is_same(item, there)
                except OSError as exc:
                    message = f"cannot read the file already there: {exc.strerror or exc}"
                    return PullResult(item, PullOutcome.FAILED, message)
                if same:
                    return PullResult(item, PullOutcome.SAME)
                if not self._may_download(item):
                    return self._not_downloadable(item)
                if not self.overwrite:
                    return PullResult(
                        item,
                        PullOutcome.KEPT,
                        "a different file is already there; kept (--overwrite replaces it)",
                    )
            elif not self._may_download(item):
                return self._not_downloadable(item)
            written = self._download(item)
        except (PullCancelledError, StoppedError):
            return PullResult(item, PullOutcome.NOT_TRIED, self._stop_reason)
        except (UnsafePathError, ContentMismatchError) as exc:
            return PullResult(item, PullOutcome.FAILED, str(exc))
        except NotFoundError:
            message = f"the remote file {item.file_id} is gone (deleted or expired)"
            return PullResult(item, PullOutcome.FAILED, message)
        except FatalError as exc:
            self.stop("the server refused the API key")
            return PullResult(item, PullOutcome.FAILED, str(exc))
        except RemoteError as exc:
            if is_refusal(exc):  # a server with other rules than the purpose list
                return PullResult(item, PullOutcome.NOT_DOWNLOADABLE, str(exc))
            return PullResult(item, PullOutcome.FAILED, str(exc))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno in _STOPPING_ERRNOS:
                self.stop(f"{reason.lower()} in the destination")
            return PullResult(item, PullOutcome.FAILED, f"cannot write: {reason}")
        return PullResult(
            item, PullOutcome.PULLED, bytes=written, duration=time.monotonic() - started
        )

    def _may_download(self, item: PullItem) -> bool:
        return self.ask_all or may_download(item.purpose)

    @staticmethod
    def _not_downloadable(item: PullItem) -> PullResult:
        return PullResult(item, PullOutcome.NOT_DOWNLOADABLE, not_allowed_reason(item.purpose))

    def _is_same(self, item: PullItem, there: os.stat_result) -> bool:
        if there.st_size != item.size:
            return False
        if item.sha256 is not None:
            return self.dest.sha256(item.path) == item.sha256
        return item.mtime_ns is not None and there.st_mtime_ns == item.mtime_ns

    def _download(self, item: PullItem) -> int:
        count = 0

        def fill(out: BinaryIO) -> None:
            nonlocal count
            writer = HashingWriter(out, self.listener.advanced, self._stop)
            self.remote.download(item.file_id, cast(BinaryIO, writer), expected_bytes=item.size)
            count = writer.count
            if writer.count != item.size:
                raise ContentMismatchError(
                    f"downloaded {writer.count} bytes but expected {item.size}; not written"
                )
            if item.sha256 is not None and writer.hexdigest() != item.sha256:
                raise ContentMismatchError(
                    f"the downloaded content's sha256 {writer.hexdigest()[:16]}... differs "
                    f"from the ledger's {item.sha256[:16]}...; not written"
                )

        self.dest.write(item.path, fill, mtime_ns=item.mtime_ns)
        return count


def summarise(results: Sequence[PullResult]) -> dict[str, int]:
    """Counts per outcome plus ``bytes`` pulled."""
    counts = {outcome.value: 0 for outcome in PullOutcome}
    for result in results:
        counts[result.outcome.value] += 1
    counts["bytes"] = sum(r.bytes for r in results)
    return counts


def undownloadable(results: Sequence[PullResult]) -> list[Undownloadable]:
    """The files that could not be restored because their content is not served; a
    refusal by the server (not decided from the purpose) keeps its message."""
    return [
        Undownloadable(
            r.item.path,
            r.item.purpose,
            None if r.message == not_allowed_reason(r.item.purpose) else r.message,
        )
        for r in results
        if r.outcome is PullOutcome.NOT_DOWNLOADABLE
    ]


def item_notes(item: PullItem) -> str:
    return describe(item.notes)


# -- which ledger ------------------------------------------------------------------------


def choose_ledger(
    folder: Path | None, state: Path | None, env: Mapping[str, str]
) -> tuple[Path, str | None]:
    """The ledger a restore command reads, and a note saying which when it was guessed.

    ``folder`` names the mirrored folder (its ledger is found as ``syncd sync`` finds
    it, even when the folder itself is gone); otherwise ``state`` (a ledger file, or a
    state directory) or the default state directory must hold exactly one ledger.
    """
    if folder is not None:
        path = ledger_path(folder, state, env)
        if not path.is_file():
            raise ConfigError(
                f"no ledger for {folder} at {path}; was it mirrored with another --state?"
            )
        return path, None
    where = state if state is not None else default_state_dir(env)
    found = find_ledgers(state, env)
    if not found:
        raise ConfigError(
            f"no ledger at {where}; name the mirrored folder with --folder FOLDER "
            "or a ledger with --state PATH"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ConfigError(
            f"{len(found)} ledgers in {where} ({names}); choose one with --folder FOLDER "
            "or --state LEDGER.db"
        )
    note = (
        None
        if state is not None and state.name.endswith(LEDGER_SUFFIX)
        else (f"using the only ledger in {where}: {found[0].name}")
    )
    return found[0], note


def state_dir(state: Path | None, env: Mapping[str, str]) -> Path:
    """The state directory ``--state`` names (a ledger file's directory) or the default;
    ``--local`` keeps its embedded server's store there."""
    if state is None:
        return default_state_dir(env)
    return state.parent if state.name.endswith(LEDGER_SUFFIX) else state
