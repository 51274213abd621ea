"""The folder walk: every regular file in scope, with its stat and (when needed) hash.

Contract of ``Scanner.scan``:

- Walks with ``os.scandir`` and never follows a symbolic link, unless
  ``follow_links_inside`` is set; then a link whose target stays inside the folder is
  followed (a directory link that leads back to one of its ancestors is a loop and is
  skipped). Links are otherwise skipped with a warning saying why.
- FIFOs, sockets and devices are skipped using ``lstat`` only: never opened.
- A name that is not valid UTF-8 cannot be sent as a filename: it is skipped with a line
  showing it escaped (``caf\\xe9.txt``).
- Per-path errors (an unreadable directory or file) become ``ScanProblem`` entries and
  the path goes into ``uncertain``: the planner must not treat it as deleted.
- ``.syncdignore`` files (``syncd.local.ignorefile``) are read as the walk enters each
  directory; an ignored directory is not entered, an ignored file not listed, and the
  rules found go with the result (``ScanResult.ignore``) for the planner. A directory
  whose ``.syncdignore`` cannot be read is uncertain (an error problem).
- Hashes (SHA-256, streamed) only when the planner will need one: a tracked path whose
  size still equals the ledger's (or the failed content's) but whose mtime or inode
  changed. Unchanged stats reuse the ledger's hash; new paths are hashed by the executor
  just before upload. A file that changes while hashed gets ``sha256=None`` ("doubt").
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from syncd.errors import FileChangedError
from syncd.local.fingerprint import Fingerprint, folder_stat, hash_file
from syncd.local.ignorefile import IGNORE_FILE, IgnoreFiles, IgnoreRules
from syncd.local.rules import PathFilter
from syncd.state.ledger import LedgerRow

# A directory still to list: its full path, its path in the folder, and its ancestors'
# (device, inode) pairs. Plain strings, not ``Path``: the walk builds one per entry.
_Pending = tuple[str, str, frozenset[tuple[int, int]]]


class LocalFile(NamedTuple):
    """One regular file as the walk found it. ``sha256`` is None when not (yet) known.

    A named tuple, not a dataclass: a pass makes one per file, and a frozen dataclass
    costs several times more to build."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    sha256: str | None = None

    def fingerprint(self) -> Fingerprint:
        return Fingerprint(self.size, self.mtime_ns, self.inode, self.sha256)

    def same_stat(self, size: int | None, mtime_ns: int | None, inode: int | None) -> bool:
        return (self.size, self.mtime_ns, self.inode) == (size, mtime_ns, inode)


@dataclass(frozen=True)
class ScanProblem:
    """A path the walk could not mirror. ``error`` False: skipped on purpose (a link, a
    FIFO); True: a file that should be mirrored but cannot be (exit code 1)."""

    path: str
    reason: str
    error: bool


@dataclass
class ScanResult:
    files: dict[str, LocalFile] = field(default_factory=dict)
    problems: list[ScanProblem] = field(default_factory=list)
    uncertain: set[str] = field(default_factory=set)
    hashed_bytes: int = 0
    ignore: IgnoreRules = field(default_factory=IgnoreRules)  # the .syncdignore rules
    warnings: list[str] = field(default_factory=list)  # e.g. a bad .syncdignore line


def display_path(path: str) -> str:
    """A printable form of a path that may hold undecodable bytes (surrogateescape)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def current_fingerprint(
    full: Path, known: LocalFile | None, st: os.stat_result, *, attempts: int = 3
) -> Fingerprint:
    """The content's fingerprint right now: ``known``'s hash if the stat ``st`` has not
    moved since the scan, else a fresh hash, retried up to ``attempts`` times while the
    file changes under the reader (then ``FileChangedError``)."""
    if (
        known is not None
        and known.sha256
        and known.same_stat(st.st_size, st.st_mtime_ns, st.st_ino)
    ):
        return known.fingerprint()
    for attempt in range(attempts):
        try:
            sha, hashed = hash_file(full)
        except FileChangedError:
            if attempt == attempts - 1:
                raise
            continue
        return Fingerprint(hashed.st_size, hashed.st_mtime_ns, hashed.st_ino, sha)
    raise FileChangedError(f"{full}: changed while it was read")


def known_hash(local: LocalFile, row: LedgerRow | None) -> str | None:
    """The ledger's hash for this exact stat, if it has one."""
    if row is None:
        return None
    if local.same_stat(row.size, row.mtime_ns, row.inode) and row.file_id is not None:
        return row.sha256
    if local.same_stat(row.failed_size, row.failed_mtime_ns, row.failed_inode):
        return row.failed_sha256
    return None


def needs_hash(local: LocalFile, row: LedgerRow | None) -> bool:
    """Whether the planner needs the hash to tell 'touched' from 'changed'."""
    if row is None:
        return False
    return local.size in (row.size if row.file_id else None, row.failed_size)


class Scanner:
    """Walks one mirrored folder (see the module docstring for the contract)."""

    def __init__(
        self, root: Path, path_filter: PathFilter, *, follow_links_inside: bool = False
    ) -> None:
        self.root = root
        self.path_filter = path_filter
        self.follow_links_inside = follow_links_inside
        self.ignore_files = IgnoreFiles(root)  # compiled once per change of each file
        self._rules = IgnoreRules()
        self._rows: Mapping[str, LedgerRow] = {}  # the ledger, while a scan runs
        self._to_hash: list[str] = []  # files the planner needs a fresh hash of

    def check_root(self) -> os.stat_result:
        """Raise FolderUnavailableError unless the folder is a readable directory."""
        return folder_stat(self.root)

    def scan(self, rows: Mapping[str, LedgerRow]) -> ScanResult:
        """Walk the whole folder; ``rows`` (the ledger) decides what needs hashing."""
        root_stat = self.check_root()
        result = ScanResult(ignore=self._begin_rules())
        self._rows = rows
        ancestors = frozenset({(root_stat.st_dev, root_stat.st_ino)})
        self._walk(str(self.root), "", ancestors, result)
        self._add_hashes(result)
        result.warnings.extend(self._rules.warnings)
        return result

    def _begin_rules(self) -> IgnoreRules:
        self._rules = self.ignore_files.begin()
        return self._rules

    def _unreadable(self, directory: str, out: ScanResult) -> bool:
        """A directory whose ``.syncdignore`` cannot be read: uncertain (said once)."""
        why = self._rules.unreadable.get(directory)
        if why is None:
            return False
        if directory not in out.uncertain:
            where = f"{directory}/{IGNORE_FILE}" if directory else IGNORE_FILE
            reason = f"{why}; nothing below its folder is mirrored until it can be read"
            out.problems.append(ScanProblem(where, reason, True))
            out.uncertain.add(directory)
        return True

    def scan_paths(self, paths: Iterable[str], rows: Mapping[str, LedgerRow]) -> ScanResult:
        """Examine only ``paths`` (files or directories); a missing path is simply absent."""
        root_stat = self.check_root()
        ancestors = frozenset({(root_stat.st_dev, root_stat.st_ino)})
        result = ScanResult(ignore=self._begin_rules())
        self._rows = rows
        for rel in sorted(set(paths)):
            parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
            if parent and self._under_link_or_missing(parent):
                continue  # the path's directory is gone (or is a link): nothing is here
            if self._ignored_above(rel, result):
                continue
            stack: list[_Pending] = []
            self._visit(str(self.root / rel), rel, ancestors, result, stack)
            for directory, rel_dir, chain in stack:
                self._walk(directory, rel_dir, chain, result)
        self._add_hashes(result)
        result.warnings.extend(self._rules.warnings)
        return result

    def _ignored_above(self, rel: str, out: ScanResult) -> bool:
        """A partial pass: whether a directory above ``rel`` is excluded, ignored or
        uncertain (the ``.syncdignore`` files on the way are loaded first). As in a full
        walk, which prunes such directories: what is walked below ``rel`` is then tested
        by its own path only (``PathFilter.accepts_in_walk``)."""
        self.ignore_files.load_chain(rel)
        parts = rel.rstrip("/").split("/")
        for n in range(len(parts)):
            directory = "/".join(parts[:n])
            if self._unreadable(directory, out):
                return True
            if directory and (
                self.path_filter.excludes_dir(directory)
                or self._rules.ignores(directory, is_dir=True)
            ):
                return True
        return False

    def _under_link_or_missing(self, rel_dir: str) -> bool:
        current = self.root
        for part in rel_dir.split("/"):
            current = current / part
            try:
                st = os.lstat(current)
            except OSError:
                return True
            if stat.S_ISLNK(st.st_mode) and not self.follow_links_inside:
                return True
        return False

    def _walk(
        self, directory: str, rel_dir: str, ancestors: frozenset[tuple[int, int]], out: ScanResult
    ) -> None:
        """Walk below ``directory`` depth-first with an explicit stack (no recursion limit)."""
        stack: list[_Pending] = [(directory, rel_dir, ancestors)]
        while stack:
            current, rel, chain = stack.pop()
            try:
                with os.scandir(current) as listing:
                    entries = sorted(listing, key=_name, reverse=True)
            except FileNotFoundError:
                continue
            except OSError as exc:
                reason = f"cannot read directory: {exc.strerror}"
                out.problems.append(ScanProblem(display_path(rel or "."), reason, True))
                out.uncertain.add(rel)
                continue
            if is_utf8(rel):
                present = any(entry.name == IGNORE_FILE for entry in entries)
                self.ignore_files.load(rel, present=present)
                if self._unreadable(rel, out):
                    continue
            prefix = f"{rel}/" if rel else ""
            for entry in entries:
                name = entry.name
                child = prefix + name
                if not (name.isascii() or is_utf8(name)):
                    self._not_utf8(child, out)
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)  # the lstat, without a Path
                except FileNotFoundError:
                    continue  # vanished since the directory was listed
                except OSError as exc:
                    out.problems.append(
                        ScanProblem(child, f"cannot read: {exc.strerror or exc}", True)
                    )
                    out.uncertain.add(child)
                    continue
                if stat.S_ISREG(st.st_mode):  # the common case first: no call for it
                    # Its directories passed excludes_dir on the way down: only the
                    # file itself is left to test against the excludes.
                    if self.path_filter.accepts_in_walk(child) and not self._rules.ignores(child):
                        self._add_file(child, st, out)
                    continue
                self._visit(entry.path, child, chain, out, stack, st)

    def _accepts(self, rel: str) -> bool:
        return self.path_filter.accepts(rel) and not self._rules.ignores(rel)

    @staticmethod
    def _not_utf8(rel: str, out: ScanResult) -> None:
        out.problems.append(
            ScanProblem(display_path(rel), "name is not valid UTF-8; rename it to mirror it", True)
        )

    def _visit(
        self,
        full: str,
        rel: str,
        ancestors: frozenset[tuple[int, int]],
        out: ScanResult,
        stack: list[_Pending],
        st: os.stat_result | None = None,
    ) -> None:
        """One entry that is not known to be a regular file (``st``: its lstat, if taken)."""
        if not is_utf8(rel):
            self._not_utf8(rel, out)
            return
        try:
            if st is None:
                st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                if not self.follow_links_inside:
                    out.problems.append(
                        ScanProblem(
                            rel,
                            "symbolic link skipped (--follow-links follows links "
                            "that stay inside the folder)",
                            False,
                        )
                    )
                    return
                target = self._follow(full, rel, ancestors, out)
                if target is None:
                    return
                st = target
            self._add(full, rel, st, ancestors, out, stack)
        except FileNotFoundError:
            return  # vanished since the directory was listed: it is simply not here
        except OSError as exc:
            out.problems.append(ScanProblem(rel, f"cannot read: {exc.strerror or exc}", True))
            out.uncertain.add(rel)

    def _follow(
        self, full: str, rel: str, ancestors: frozenset[tuple[int, int]], out: ScanResult
    ) -> os.stat_result | None:
        """The stat of a link's target when it may be followed, else None (reported)."""
        try:
            target_stat = Path(full).stat()
        except FileNotFoundError:
            out.problems.append(ScanProblem(rel, "dangling symbolic link skipped", False))
            return None
        except OSError as exc:
            loop = exc.errno == errno.ELOOP
            reason = "symbolic link loop skipped" if loop else f"link: {exc.strerror}"
            out.problems.append(ScanProblem(rel, reason, False))
            return None
        target = Path(os.path.realpath(full))
        root = Path(os.path.realpath(self.root))
        if target != root and root not in target.parents:
            out.problems.append(
                ScanProblem(rel, f"link points outside the folder (to {target}); skipped", False)
            )
            return None
        if stat.S_ISDIR(target_stat.st_mode) and (
            (target_stat.st_dev, target_stat.st_ino) in ancestors
        ):
            out.problems.append(ScanProblem(rel, "symbolic link loop skipped", False))
            return None
        return target_stat

    def _add(
        self,
        full: str,
        rel: str,
        st: os.stat_result,
        ancestors: frozenset[tuple[int, int]],
        out: ScanResult,
        stack: list[_Pending],
    ) -> None:
        if stat.S_ISDIR(st.st_mode):
            if not self.path_filter.excludes_dir(rel) and not self._rules.ignores(rel, is_dir=True):
                stack.append((full, rel, ancestors | {(st.st_dev, st.st_ino)}))
        elif stat.S_ISREG(st.st_mode):
            if self._accepts(rel):
                self._add_file(rel, st, out)
        elif self._accepts(rel):
            out.problems.append(ScanProblem(rel, f"{_kind(st.st_mode)} skipped", False))

    def _add_file(self, rel: str, st: os.stat_result, out: ScanResult) -> None:
        """List a file, with the ledger's hash when its stat is the one the ledger has
        (the file is built once, hash included); note it when it needs a fresh hash."""
        size, mtime_ns, inode = st.st_size, st.st_mtime_ns, st.st_ino
        row = self._rows.get(rel)
        if row is None:
            out.files[rel] = LocalFile(rel, size, mtime_ns, inode)
            return
        if (  # known_hash's first case, the usual one, without building the file twice
            row.file_id is not None
            and row.size == size
            and row.mtime_ns == mtime_ns
            and row.inode == inode
        ):
            out.files[rel] = LocalFile(rel, size, mtime_ns, inode, row.sha256)
            return
        local = LocalFile(rel, size, mtime_ns, inode)
        sha = known_hash(local, row)
        if sha is not None:
            local = local._replace(sha256=sha)
        elif needs_hash(local, row):
            self._to_hash.append(rel)
        out.files[rel] = local

    def _add_hashes(self, result: ScanResult) -> None:
        """Hash the files ``_add_file`` noted (in the order the walk found them)."""
        to_hash, self._to_hash, self._rows = self._to_hash, [], {}
        for rel in to_hash:
            local = result.files.get(rel)
            if local is None:
                continue
            try:
                sha, _ = hash_file(self.root / rel)
                result.hashed_bytes += local.size
            except FileChangedError:
                continue  # doubt (no hash): the planner treats it as changed
            except FileNotFoundError:
                del result.files[rel]
                continue
            except OSError as exc:
                result.problems.append(ScanProblem(rel, f"cannot read: {exc.strerror}", True))
                result.uncertain.add(rel)
                del result.files[rel]
                continue
            result.files[rel] = local._replace(sha256=sha)


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
