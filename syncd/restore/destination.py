"""Writing below a destination folder without ever leaving it, and hashing while writing.

Contract of ``Destination`` (the folder itself is trusted; every name below it is not):

- The folder is opened once as a directory; each path below it is reached one component
  at a time with ``openat(O_DIRECTORY | O_NOFOLLOW)``, creating directories as needed. A
  component that is a symbolic link or not a directory raises ``UnsafePathError`` naming
  it. So nothing is written outside the folder, whatever links are planted inside it,
  even ones swapped in while writing (the open directory is what gets written).
- ``write`` streams into a temporary ``.syncd-<random>.part`` created with
  ``O_EXCL | O_NOFOLLOW`` in the target's own directory, fsyncs it, sets its mtime,
  renames it over the target (atomic, same directory) and fsyncs the directory. If
  anything fails, the temporary file is removed: the target holds its old content or the
  whole new one, never a part. A target that is a link, a directory or a special file
  is never replaced.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

from syncd.errors import PullCancelledError, SyncdError, UnsafePathError
from syncd.local.rules import PULL_TEMP_PREFIX, PULL_TEMP_SUFFIX
from syncd.restore.names import is_inside, parent_dirs

HASH_CHUNK = 1024 * 1024


class HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it into ``out``
    (or nowhere, when ``out`` is None: verify's sink). Rewinding to 0 (a download that
    restarts) resets the hash and count. Raises ``PullCancelledError`` once ``stop`` is set."""

    def __init__(
        self,
        out: BinaryIO | None,
        on_bytes: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self._out = out
        self._on_bytes = on_bytes
        self._stop = stop
        self._sha = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.count

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if (offset, whence) != (0, os.SEEK_SET):
            raise io.UnsupportedOperation("a HashingWriter can only rewind to the start")
        if self._out is not None:
            self._out.seek(0)
        if self._on_bytes is not None and self.count:
            self._on_bytes(-self.count)
        self._sha = hashlib.sha256()
        self.count = 0
        return 0

    def truncate(self, size: int | None = None) -> int:
        if self._out is not None:
            self._out.truncate(self.count if size is None else size)
        return self.count if size is None else size

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self._stop is not None and self._stop.is_set():
            raise PullCancelledError("stopped")
        if self._out is not None:
            self._out.write(data)
        self._sha.update(data)
        self.count += len(data)
        if self._on_bytes is not None:
            self._on_bytes(len(data))
        return len(data)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def describe_mode(mode: int) -> str:
    """What a path is, for messages like '<path> in the destination is a directory'."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a file, not a directory"
    return "a special file (FIFO, socket or device)"


class Destination:
    """The destination folder, opened once; every access is relative to its descriptor
    and never follows a link (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.real = os.path.realpath(root)
            self._fd = os.open(self.real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise SyncdError(f"destination {root}: {exc.strerror or exc}") from None
        self.root = root

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Destination:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _parent_fd(self, rel: str, *, create: bool) -> int | None:
        """A new descriptor of ``rel``'s directory (the caller closes it); None when it
        does not exist and ``create`` is false. ``UnsafePathError`` for a link on the way."""
        if not is_inside(self.real, rel):
            raise UnsafePathError(f"{rel!r} would be outside the destination; refused")
        fd = os.dup(self._fd)
        try:
            for where in parent_dirs(rel):
                name = where.rsplit("/", 1)[-1]
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o777, dir_fd=fd)
                try:
                    child = os.open(
                        name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                    )
                except FileNotFoundError:
                    if create:
                        raise
                    os.close(fd)
                    return None
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                    tail = "; not followed" if stat.S_ISLNK(mode) else ""
                    raise UnsafePathError(
                        f"{where} in the destination is {describe_mode(mode)}{tail}"
                    ) from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def lstat(self, rel: str) -> os.stat_result | None:
        """The target's own status (a link is not followed), or None if nothing is there."""
        fd = self._parent_fd(rel, create=False)
        if fd is None:
            return None
        try:
            return os.stat(rel.rsplit("/", 1)[-1], dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)

    def sha256(self, rel: str) -> str:
        """SHA-256 of the regular file at ``rel`` (opened without following a link)."""
        fd = self._parent_fd(rel, create=False)
        if fd is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", rel)
        try:
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            file_fd = os.open(rel.rsplit("/", 1)[-1], flags, dir_fd=fd)
        finally:
            os.close(fd)
        with os.fdopen(file_fd, "rb") as stream:
            digest = hashlib.sha256()
            while chunk := stream.read(HASH_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def write(self, rel: str, fill: Callable[[BinaryIO], None], *, mtime_ns: int | None) -> None:
        """Create or replace ``rel`` with what ``fill`` writes, atomically (module
        docstring). Whatever ``fill`` raises propagates after the temp file is removed."""
        parent = self._parent_fd(rel, create=True)
        assert parent is not None  # create=True never gives None
        name = rel.rsplit("/", 1)[-1]
        temp = f"{PULL_TEMP_PREFIX}{secrets.token_hex(6)}{PULL_TEMP_SUFFIX}"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(temp, flags, 0o666, dir_fd=parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    fill(cast(BinaryIO, out))
                    out.flush()
                    os.fsync(out.fileno())
                    if mtime_ns is not None:
                        os.utime(out.fileno(), ns=(mtime_ns, mtime_ns))
                with contextlib.suppress(FileNotFoundError):
                    mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
                    if not stat.S_ISREG(mode):
                        raise UnsafePathError(
                            f"{rel} is {describe_mode(mode)} in the destination; kept"
                        )
                os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=parent)
                raise
            os.fsync(parent)
        finally:
            os.close(parent)
