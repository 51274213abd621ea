"""One process at a time: an exclusive ``flock`` on a lock file that names its holder.

Used for each ledger (``<ledger>.db.lock``) and for the store of ``syncd serve``
(``<store>/.lock``). The lock lives as long as the process holds the open file: a
crash (even ``kill -9``) releases it, so there is never a stale lock to clean. The
file is opened without following a symbolic link, so a link planted where the lock
belongs cannot make syncd create or truncate a file elsewhere.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from syncd.errors import LockHeldError


class FileLock:
    """An exclusive, non-blocking ``flock`` on ``path``, naming this process as holder.

    Raises ``LockHeldError`` when another process holds it, ``OSError`` when the file
    cannot be opened (a link in its place: ``ELOOP``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise LockHeldError(path, holder) from None
        os.ftruncate(fd, 0)
        command = " ".join(sys.argv)[:300]
        os.pwrite(fd, f"pid {os.getpid()}: {command}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Let go (idempotent); the holder's line is cleared first."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None
