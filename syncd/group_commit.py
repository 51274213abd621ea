"""Group commit for a SQLite connection shared by threads (the ledger, `syncd serve`'s store).

With ``synchronous=FULL`` every COMMIT is an fsync, a few milliseconds each; one write
transaction per worker per step makes those fsyncs, one after the other, the ceiling of
a pass (or of the server). ``GroupCommit.transaction()`` lets the blocks of writers that
arrive while one is running join one SQLite transaction, each in its own savepoint (a
block that raises is rolled back alone), which the last writer of the group commits:
one fsync for the group. No block returns before the commit that holds it is done, so
what a block wrote is on disk when it returns, as with a transaction of its own; a
failed COMMIT raises in every block of the group.

A block inside a block of the same thread is a nested savepoint of the outer one.
Readers of the same connection (under ``lock``) may see a group's writes a moment
before they are committed.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator


class _Group:
    """One transaction shared by a group of writers."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class GroupCommit:
    """Write transactions on ``conn``, serialised by ``lock`` (module docstring)."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock | threading.Lock) -> None:
        self._conn = conn
        self._lock = lock
        self._group: _Group | None = None
        self._writers = 0  # in a block or waiting to enter one
        self._writers_lock = threading.Lock()
        self._nested = threading.local()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        if getattr(self._nested, "depth", 0):
            with self._savepoint("group_nested"):
                yield self._conn
            return
        with self._writers_lock:
            self._writers += 1
        group: _Group | None = None
        try:
            with self._lock:
                if self._group is None:
                    self._conn.execute("BEGIN IMMEDIATE")
                    self._group = _Group()
                group = self._group
                self._nested.depth = 1
                try:
                    with self._savepoint("group_write"):
                        yield self._conn
                finally:
                    self._nested.depth = 0
        finally:
            with self._writers_lock:
                self._writers -= 1
                last = self._writers == 0
            if group is not None:
                self._settle(group, commit=last)

    @contextlib.contextmanager
    def _savepoint(self, name: str) -> Iterator[None]:
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._conn.execute(f"ROLLBACK TO {name}")
            self._conn.execute(f"RELEASE {name}")
            raise
        self._conn.execute(f"RELEASE {name}")

    def _settle(self, group: _Group, *, commit: bool) -> None:
        """Commit ``group`` (its last writer does), or wait for the one who does."""
        if commit:
            with self._lock:
                if not group.done.is_set():
                    self._group = None
                    try:
                        self._conn.execute("COMMIT")
                    except BaseException as exc:
                        group.error = exc
                        with contextlib.suppress(sqlite3.Error):
                            self._conn.execute("ROLLBACK")
                    finally:
                        group.done.set()
        else:
            group.done.wait()
        if group.error is not None:
            raise type(group.error)(*group.error.args) from group.error
