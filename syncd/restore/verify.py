"""``syncd verify``: do the folder, the ledger and the remote agree?

Three sides, compared in two steps:

1. ``compare`` (pure): the folder's scan against the ledger, and the ledger against the
   remote listing. It finds local files that are not mirrored, tracked files gone from
   the folder or changed in it, remote copies that are gone or have the wrong size, and
   extra remote files: an old version whose delete is still pending, or a second
   remote file carrying a mirrored path's name that is not the ledger's (a duplicate
   upload) -- unless it is ``not_ours``: another ledger of this host records it, or this
   one keeps it as possibly its own (reported apart, see ``syncd candidates``). Remote
   files with other names are not syncd's business and are ignored.
2. ``check_remote_content`` (the default; skipped by ``--quick``): download every
   tracked remote file whose purpose the API serves, hashing it as it streams (nothing
   is written to disk), and compare with the ledger's SHA-256. Local files are hashed
   too (``hash_local``), so a change that kept size and mtime is found. The full mode
   also compares each listed file's name, purpose and expiry with the ledger's
   (``check_metadata``).

Files whose purpose cannot be downloaded (``syncd.api.may_download`` on the ledger row's
purpose, decided before asking) are checked as far as they can be: the remote file
exists with the recorded id, bytes, name, purpose and expiry, and the folder's content
hashes to the ledger's SHA-256. They are no difference; the summary says how many were
checked that way and why. A 400 to a download (a server with other rules) is the same
outcome, not a difference (``syncd.restore.undownloadable``).

With ``--quick`` local files are compared by stat as ``syncd sync`` does (size, then
mtime and inode, hashing only a file whose size is unchanged but whose stat moved), and
remote files by the listing's byte count.

Every difference is a ``Difference`` (kind, path, detail, file id); the folder agrees
with its mirror exactly when there are none.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO, cast

from syncd.api import RemoteFile, may_download, wire_filename
from syncd.errors import FatalError, FileChangedError, NotFoundError, RemoteError
from syncd.local.fingerprint import hash_file
from syncd.local.rules import PathFilter
from syncd.local.scan import ScanResult
from syncd.remote.protocol import FilesRemote
from syncd.restore.destination import HashingWriter
from syncd.restore.undownloadable import Undownloadable, is_refusal
from syncd.state.ledger import LedgerRow


class DiffKind(StrEnum):
    NOT_MIRRORED = "not-mirrored"  # a local file with no remote copy
    LOCAL_MISSING = "local-missing"  # tracked, but gone from the folder
    LOCAL_CHANGED = "local-changed"  # the folder's content differs from the ledger's
    LOCAL_UNREADABLE = "local-unreadable"
    REMOTE_MISSING = "remote-missing"  # the ledger's remote file is not on the remote
    REMOTE_SIZE = "remote-size"  # the remote byte count differs from the ledger's
    REMOTE_CONTENT = "remote-content"  # the remote content's hash differs
    REMOTE_UNREADABLE = "remote-unreadable"  # the download failed
    REMOTE_EXTRA = "remote-extra"  # a remote file syncd made that the ledger does not own
    REMOTE_METADATA = "remote-metadata"  # name, purpose or expiry differ from the ledger's
    NO_HASH = "no-hash"  # the ledger has no hash for the mirrored version


@dataclass(frozen=True)
class Difference:
    kind: DiffKind
    path: str
    detail: str
    file_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "path": self.path,
            "detail": self.detail,
            "file_id": self.file_id,
        }


def tracked(rows: Mapping[str, LedgerRow]) -> dict[str, LedgerRow]:
    """The rows that have a remote copy."""
    return {path: row for path, row in rows.items() if row.file_id is not None}


def expected_remote_bytes(row: LedgerRow) -> int | None:
    return row.remote_bytes if row.remote_bytes is not None else row.size


def compare(
    scan: ScanResult,
    rows: Mapping[str, LedgerRow],
    listing: Sequence[RemoteFile],
    *,
    path_filter: PathFilter,
    pending_deletes: Mapping[str, str],
    local_hashes: Mapping[str, str] | None = None,
    not_ours: Collection[str] = frozenset(),
    check_metadata: bool = False,
) -> list[Difference]:
    """Every difference visible without downloading (see the module docstring).

    ``pending_deletes`` maps remote ids the ledger intends to delete to their paths.
    ``not_ours``: ids that are no duplicate of this ledger's (another ledger's files,
    this one's kept candidates).
    ``local_hashes`` (full mode) are fresh hashes of local files; without them a local
    file's hash is the scan's, which trusts the ledger when the stat is unchanged.
    ``check_metadata`` (full mode) also compares names, purposes and expiry.
    """
    found: list[Difference] = []
    mirrored = tracked(rows)
    for problem in scan.problems:
        if problem.error:
            found.append(Difference(DiffKind.LOCAL_UNREADABLE, problem.path, problem.reason))
    for path, local in sorted(scan.files.items()):
        row = rows.get(path)
        if row is None or row.file_id is None:
            why = f" (last error: {row.last_error})" if row and row.last_error else ""
            found.append(Difference(DiffKind.NOT_MIRRORED, path, "no remote copy" + why))
            continue
        sha = (local_hashes or {}).get(path, local.sha256)
        if local.size != row.size:
            detail = f"{local.size} bytes in the folder, {row.size} when mirrored"
            found.append(Difference(DiffKind.LOCAL_CHANGED, path, detail, row.file_id))
        elif row.sha256 is not None and sha is not None and sha != row.sha256:
            detail = "content differs from the mirrored version (same size)"
            found.append(Difference(DiffKind.LOCAL_CHANGED, path, detail, row.file_id))
        elif row.sha256 is not None and sha is None:
            detail = "changed while it was read; cannot tell"
            found.append(Difference(DiffKind.LOCAL_CHANGED, path, detail, row.file_id))
    for path, row in sorted(mirrored.items()):
        if path not in scan.files and path not in scan.uncertain and path_filter.accepts(path):
            detail = "in the ledger but not in the folder (deleted since the last sync?)"
            found.append(Difference(DiffKind.LOCAL_MISSING, path, detail, row.file_id))
        if row.sha256 is None:
            detail = "the ledger has no hash of the mirrored version; run `syncd sync`"
            found.append(Difference(DiffKind.NO_HASH, path, detail, row.file_id))
    found += _compare_remote(mirrored, listing, pending_deletes, not_ours)
    if check_metadata:
        found += _compare_metadata(mirrored, listing)
    return found


def _compare_metadata(
    mirrored: Mapping[str, LedgerRow], listing: Sequence[RemoteFile]
) -> list[Difference]:
    """Listed files whose name, purpose or expiry is not what the ledger recorded."""
    found: list[Difference] = []
    by_id = {remote.id: remote for remote in listing}
    for path, row in sorted(mirrored.items()):
        remote = by_id.get(str(row.file_id))
        if remote is None:
            continue  # remote-missing already
        name = row.remote_filename or wire_filename(path)
        problems = []
        if remote.filename != name:
            problems.append(f"is named {remote.filename!r}, the ledger recorded {name!r}")
        if row.purpose is not None and remote.purpose != row.purpose:
            problems.append(f"has purpose {remote.purpose}, the ledger recorded {row.purpose}")
        if remote.expires_at != row.expires_at:
            problems.append(
                f"expires at {_stamp(remote.expires_at)}, the ledger recorded "
                f"{_stamp(row.expires_at)}"
            )
        if problems:
            detail = f"the remote file {remote.id} " + "; ".join(problems)
            found.append(Difference(DiffKind.REMOTE_METADATA, path, detail, row.file_id))
    return found


def _stamp(expires_at: int | None) -> str:
    return "never" if expires_at is None else str(expires_at)


def _compare_remote(
    mirrored: Mapping[str, LedgerRow],
    listing: Sequence[RemoteFile],
    pending_deletes: Mapping[str, str],
    not_ours: Collection[str],
) -> list[Difference]:
    found: list[Difference] = []
    by_id = {remote.id: remote for remote in listing}
    for path, row in sorted(mirrored.items()):
        remote = by_id.get(str(row.file_id))
        if remote is None:
            detail = f"the remote file {row.file_id} is gone (deleted or expired)"
            found.append(Difference(DiffKind.REMOTE_MISSING, path, detail, row.file_id))
            continue
        want = expected_remote_bytes(row)
        if want is not None and remote.bytes != want:
            detail = f"the remote file has {remote.bytes} bytes, the ledger recorded {want}"
            found.append(Difference(DiffKind.REMOTE_SIZE, path, detail, row.file_id))
    owned = {row.file_id for row in mirrored.values()}
    names: dict[str, str] = {}
    for path, row in mirrored.items():
        names[wire_filename(path)] = path
        if row.remote_filename:
            names[row.remote_filename] = path
    for remote in listing:
        if remote.id in owned or (remote.id in not_ours and remote.id not in pending_deletes):
            continue
        if remote.id in pending_deletes:
            detail = f"old version {remote.id}, still to be deleted (the next sync does it)"
            found.append(
                Difference(DiffKind.REMOTE_EXTRA, pending_deletes[remote.id], detail, remote.id)
            )
        elif remote.filename in names:
            path = names[remote.filename]
            detail = (
                f"a second remote file {remote.id} ({remote.bytes} bytes) carries this name; "
                f"the ledger's is {mirrored[path].file_id}"
            )
            found.append(Difference(DiffKind.REMOTE_EXTRA, path, detail, remote.id))
    return found


def local_targets(scan: ScanResult, rows: Mapping[str, LedgerRow]) -> list[str]:
    """The local files ``hash_local`` hashes: tracked, and still of the recorded size."""
    return sorted(
        path
        for path, local in scan.files.items()
        if (row := rows.get(path)) is not None and row.file_id and row.size == local.size
    )


def hash_local(
    folder: Path,
    scan: ScanResult,
    rows: Mapping[str, LedgerRow],
    *,
    concurrency: int,
    on_bytes: Callable[[int], None] | None = None,
) -> tuple[dict[str, str], list[Difference]]:
    """Fresh SHA-256 of every local file whose size matches its ledger row."""
    wanted = local_targets(scan, rows)
    hashes: dict[str, str] = {}
    problems: list[Difference] = []
    lock = threading.Lock()

    def one(path: str) -> None:
        try:
            sha, _ = hash_file(folder / path, on_chunk=on_bytes)
        except (FileChangedError, FileNotFoundError):
            return  # changed or gone since the scan: compare() reports "cannot tell"
        except OSError as exc:
            with lock:
                problems.append(Difference(DiffKind.LOCAL_UNREADABLE, path, str(exc.strerror)))
            return
        with lock:
            hashes[path] = sha

    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="verify-hash") as pool:
        list(pool.map(one, wanted))
    return hashes, problems


@dataclass(frozen=True)
class ContentCheck:
    """What ``check_remote_content`` found: differences, and the files the server refused
    to download (checked by size only, like those decided from their purpose)."""

    differences: list[Difference]
    refused: list[Undownloadable]


def check_remote_content(
    remote: FilesRemote,
    rows: Mapping[str, LedgerRow],
    listing: Sequence[RemoteFile],
    *,
    concurrency: int,
    on_bytes: Callable[[int], None] | None = None,
    on_file: Callable[[], None] | None = None,
    ask_all: bool = False,
) -> ContentCheck:
    """Download (into no file) every tracked remote file whose size is right and whose
    purpose may be downloaded, and compare its SHA-256 with the ledger's. A rejected key
    stops it (``FatalError``)."""
    todo = content_targets(rows, listing, ask_all=ask_all)
    refused: list[Undownloadable] = []
    lock = threading.Lock()

    def one(entry: tuple[str, LedgerRow]) -> Difference | None:
        path, row = entry
        file_id = str(row.file_id)
        sink = HashingWriter(None, on_bytes)
        try:
            remote.download(file_id, cast(BinaryIO, sink))
        except NotFoundError:
            detail = f"the remote file {file_id} disappeared while verifying"
            return Difference(DiffKind.REMOTE_MISSING, path, detail, file_id)
        except FatalError:
            raise
        except RemoteError as exc:
            if is_refusal(exc):  # not served after all: checked by size only
                with lock:
                    refused.append(Undownloadable(path, row.purpose, str(exc)))
                return None
            return Difference(DiffKind.REMOTE_UNREADABLE, path, str(exc), file_id)
        finally:
            if on_file is not None:
                on_file()
        if sink.hexdigest() != row.sha256:
            detail = (
                f"the remote content's sha256 {sink.hexdigest()[:16]}... differs from the "
                f"ledger's {str(row.sha256)[:16]}..."
            )
            return Difference(DiffKind.REMOTE_CONTENT, path, detail, file_id)
        return None

    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="verify") as pool:
        results = list(pool.map(one, todo))
    found = [difference for difference in results if difference is not None]
    return ContentCheck(found, sorted(refused, key=lambda u: u.path))


def _checkable(
    rows: Mapping[str, LedgerRow], listing: Sequence[RemoteFile]
) -> list[tuple[str, LedgerRow]]:
    """Tracked files with a hash in the ledger that are listed with the expected size
    (others are reported by ``compare`` already)."""
    present = {remote_file.id: remote_file for remote_file in listing}
    return [
        (path, row)
        for path, row in sorted(tracked(rows).items())
        if row.sha256 is not None
        and (listed := present.get(str(row.file_id))) is not None
        and listed.bytes == expected_remote_bytes(row)
    ]


def content_targets(
    rows: Mapping[str, LedgerRow], listing: Sequence[RemoteFile], *, ask_all: bool = False
) -> list[tuple[str, LedgerRow]]:
    """The tracked files whose content ``check_remote_content`` downloads: the checkable
    ones whose recorded purpose may be downloaded (all of them with ``ask_all``)."""
    return [
        (path, row)
        for path, row in _checkable(rows, listing)
        if ask_all or may_download(row.purpose)
    ]


def size_only(
    rows: Mapping[str, LedgerRow], listing: Sequence[RemoteFile], *, ask_all: bool = False
) -> list[Undownloadable]:
    """The checkable files whose content cannot be downloaded (by their recorded
    purpose): checked by size, name, purpose, expiry and the local hash only."""
    if ask_all:
        return []
    return [
        Undownloadable(path, row.purpose)
        for path, row in _checkable(rows, listing)
        if not may_download(row.purpose)
    ]


def sort_differences(found: Sequence[Difference]) -> list[Difference]:
    return sorted(found, key=lambda d: (d.path, d.kind.value, d.file_id or ""))
