"""What identifies a file's content, and a folder: hashes, stats, (device, inode).

- :class:`Fingerprint`: one version of a file's content (size, mtime, inode, SHA-256).
- :func:`hash_file`: the SHA-256 of a file, refused (``FileChangedError``) when the file
  changed while it was read.
- :func:`folder_stat` / :func:`folder_identity`: whether the mirrored folder is there and
  which directory it is. This is the one place that decides "is the folder still the
  folder?"; the scanner, the engine, the watcher and the daemon's unmount guard all ask
  it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from syncd.errors import FileChangedError, FolderUnavailableError, NotRegularFileError

HASH_CHUNK = 1024 * 1024

Identity = tuple[int, int]  # (st_dev, st_ino) of a directory


@dataclass(frozen=True)
class Fingerprint:
    """What identifies one version of a local file's content."""

    size: int
    mtime_ns: int
    inode: int
    sha256: str | None


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def hash_file(
    path: Path | str, *, on_chunk: Callable[[int], None] | None = None
) -> tuple[str, os.stat_result]:
    """SHA-256 of the file's content and the stat that content had.

    Opens without blocking (a FIFO swapped in is refused, not waited on), and compares
    the stat before and after reading: ``FileChangedError`` when they differ or when the
    path now names another file. ``on_chunk(n)`` is called after each chunk.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as stream:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise NotRegularFileError(f"{path}: not a regular file")
        digest = hashlib.sha256()
        read = 0
        # Read at most the size seen at the start, so a file that keeps growing as fast
        # as it is read still ends (and is then caught by the stat comparison).
        while read < before.st_size:
            chunk = stream.read(min(HASH_CHUNK, before.st_size - read))
            if not chunk:
                break
            digest.update(chunk)
            read += len(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
        after = os.fstat(fd)
    now = Path(path).stat()
    if not (_stat_key(before) == _stat_key(after) == _stat_key(now) and read == before.st_size):
        raise FileChangedError(f"{path}: changed while it was read")
    return digest.hexdigest(), before


def folder_stat(folder: Path) -> os.stat_result:
    """The folder's stat; FolderUnavailableError (saying why) unless it is a directory."""
    try:
        st = folder.stat()
    except FileNotFoundError:
        raise FolderUnavailableError(f"folder {folder} does not exist") from None
    except OSError as exc:
        raise FolderUnavailableError(f"folder {folder}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise FolderUnavailableError(f"{folder} is not a directory")
    return st


def folder_identity(folder: Path) -> Identity | None:
    """(device, inode) of ``folder``; None when it is missing or not a directory."""
    try:
        st = folder_stat(folder)
    except FolderUnavailableError:
        return None
    return (st.st_dev, st.st_ino)


def folder_is_empty(folder: Path) -> bool:
    """True when ``folder`` holds no entry at all (what a bare mount point looks like)."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:
        return False
