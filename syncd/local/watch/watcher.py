"""Folder watching: filesystem events become *hints* of paths to look at again.

Events are hints, not facts (Syncthing's watchaggregator): inotify coalesces and drops
events, and a file may change again before we read it. So nothing here says what
happened to a file, only "look at this path again once it has been quiet"; the caller
stats (and hashes) it then. :class:`FolderWatcher` turns watchdog events (inotify) on
one folder into hints (their forms: ``syncd.local.watch.aggregator``).

A move hints both sides, so an atomic save (write ``x.tmp``, rename it over ``x``) hints
``x``, while the ignored temp name is never hinted. Ignore globs match the base name of
files only: a directory called ``build.tmp`` is still watched.

Callbacks run on the watcher's threads and must be quick and thread-safe
(``DirtyPathAggregator.note`` is both). ``on_trouble(reason)`` means "events may have
been lost: do a full rescan"; the reason names the sysctl to raise when a kernel limit
is the cause. ``on_root_gone()`` comes once when the folder itself is deleted, renamed
away or unmounted; the watcher then stops, and the caller must not read the folder's
absence as "every file deleted": it pauses and starts a new watcher once it is back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from syncd.local.fingerprint import Identity, folder_identity
from syncd.local.rules import DEFAULT_IGNORES, is_ignored_name
from syncd.local.watch.aggregator import SUBTREE_SUFFIX, hint_covers

log = structlog.get_logger(__name__)

# Harmless watchdog noise in the journal: a new directory's watch registered twice.
warnings.filterwarnings("ignore", r"Callback with id .* already exists", RuntimeWarning)

# What we ask inotify for. Opens, reads and close-without-write are left out on purpose:
# syncd reads every file it uploads, and those reads must not come back as hints.
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]

SYSCTL_WATCHES = "fs.inotify.max_user_watches"
SYSCTL_INSTANCES = "fs.inotify.max_user_instances"
SYSCTL_QUEUE = "fs.inotify.max_queued_events"


def describe_limit_error(exc: OSError, folder: str) -> str | None:
    """A one-line explanation naming the sysctl to raise, or None if not a limit error."""
    if exc.errno == errno.ENOSPC:
        return (
            f"cannot watch every directory under {folder}: the inotify watch limit is "
            f"reached; raise {SYSCTL_WATCHES} (sysctl -w {SYSCTL_WATCHES}=524288); "
            "until then changes are found by periodic rescans"
        )
    if exc.errno == errno.EMFILE:
        return (
            f"cannot watch {folder}: the inotify instance limit is reached; raise "
            f"{SYSCTL_INSTANCES} (sysctl -w {SYSCTL_INSTANCES}=1024); until then "
            "changes are found by periodic rescans"
        )
    return None


class _InotifyProbe:
    """A private inotify instance used to ask "is the watch limit exhausted?".

    Some watchdog releases skip a subdirectory silently when adding its watch fails, so
    the watcher adds one watch of its own on the folder after start (and now and then):
    ENOSPC there means the user's watches are used up and part of the tree may be blind.
    """

    _IN_DELETE_SELF = 0x400

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        c_int, c_uint32 = ctypes.c_int, ctypes.c_uint32
        self._add = libc.inotify_add_watch
        self._add.argtypes, self._add.restype = [c_int, ctypes.c_char_p, c_uint32], c_int
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes, self._rm.restype = [c_int, c_int], c_int
        init1 = libc.inotify_init1
        init1.argtypes, init1.restype = [c_int], c_int
        fd = int(init1(os.O_NONBLOCK | os.O_CLOEXEC))  # IN_NONBLOCK, IN_CLOEXEC
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self._fd = fd

    def watches_exhausted(self, path: str) -> bool:
        """True if adding one more watch fails with ENOSPC (other failures: False)."""
        wd = int(self._add(self._fd, os.fsencode(path), self._IN_DELETE_SELF))
        if wd < 0:
            return ctypes.get_errno() == errno.ENOSPC
        self._rm(self._fd, wd)
        with contextlib.suppress(BlockingIOError):  # drain the IN_IGNORED it queued
            os.read(self._fd, 4096)
        return False

    def close(self) -> None:
        os.close(self._fd)


class _EventHandler(FileSystemEventHandler):
    def __init__(self, watcher: FolderWatcher) -> None:
        self._watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._watcher._on_event(event)
        except Exception:  # an exception here would kill the observer thread silently
            log.exception("watch_event_failed", folder=self._watcher._root)


class _WatchdogLogTap(logging.Handler):
    """Turns watchdog's own warnings about this folder into ``on_trouble`` reports.

    watchdog reports an inotify queue overflow (IN_Q_OVERFLOW) only by logging a warning
    (``Inotify queue overflowed; reconciling recursive watches below <path>``) and
    rebuilding its watches; events in between are lost. The tap listens on the
    ``watchdog.observers`` loggers for WARNING and above that name our folder.
    """

    def __init__(self, watcher: FolderWatcher) -> None:
        super().__init__(logging.WARNING)
        self._watcher = watcher
        self._mentions = re.compile(re.escape(watcher._root) + r"(?=$|[/'\"\s:,)])")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            return
        if not self._mentions.search(message):
            return
        exc = record.exc_info[1] if record.exc_info else None
        reason = (
            describe_limit_error(exc, self._watcher._root) if isinstance(exc, OSError) else None
        )
        if reason is None and "overflow" in message.lower():
            reason = (
                f"inotify event queue overflowed for {self._watcher._root}: events "
                f"were lost, rescanning everything (raise {SYSCTL_QUEUE} if this repeats)"
            )
        if reason is None:
            reason = f"watcher trouble for {self._watcher._root}: {message}; rescanning"
        self._watcher._trouble(reason)


class FolderWatcher:
    """Watches one folder recursively; reports hints, trouble, and the folder's loss.

    ``start()`` never raises for filesystem or kernel-limit problems: they arrive through
    ``on_trouble`` / ``on_root_gone`` and ``alive`` stays False, so the caller falls back
    to periodic rescans. ``stop()`` is idempotent and may be called from a callback.
    """

    def __init__(
        self,
        folder: Path,
        on_hint: Callable[[str], None],
        *,
        ignore_globs: Sequence[str] = DEFAULT_IGNORES,
        on_trouble: Callable[[str], None],
        on_root_gone: Callable[[], None],
        state_dir: Path | None = None,
        root_check_interval: float = 1.0,
        limit_check_interval: float = 60.0,
    ) -> None:
        # abspath, not resolve(): watchdog reports paths under the very string it was given.
        self.folder = Path(os.path.abspath(folder))  # noqa: PTH100
        self._root = os.fsdecode(self.folder)
        self._prefix = self._root.rstrip("/") + "/"
        self._on_hint = on_hint
        self._on_trouble = on_trouble
        self._on_root_gone = on_root_gone
        self._ignore = tuple(ignore_globs)
        self._state_rel: str | None = None
        if state_dir is not None:  # it should never be inside, but if it is: no feedback loop
            state = os.fsdecode(os.path.abspath(state_dir))  # noqa: PTH100
            if state.startswith(self._prefix):
                self._state_rel = state[len(self._prefix) :].rstrip("/")
        self._root_interval = root_check_interval
        self._limit_interval = limit_check_interval
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._observer: Any = None
        self._monitor: threading.Thread | None = None
        self._probe: _InotifyProbe | None = None
        self._tap: _WatchdogLogTap | None = None
        self._identity: Identity | None = None
        self._started = False
        self._gone_reported = False
        self._limit_reported = False

    @property
    def alive(self) -> bool:
        """True while the observer runs (after an ENOSPC report, for part of the tree)."""
        observer = self._observer
        if observer is None or self._stopping.is_set() or not observer.is_alive():
            return False
        return all(emitter.is_alive() for emitter in observer.emitters)

    def start(self) -> None:
        """Begin watching. Call once; see the class docstring for how failures surface."""
        if self._started:
            raise RuntimeError("FolderWatcher.start() may only be called once")
        self._started = True
        self._identity = folder_identity(self.folder)
        if self._identity is None:
            self._report_gone()
            return
        self._tap = _WatchdogLogTap(self)
        logging.getLogger("watchdog.observers").addHandler(self._tap)
        observer: Any = None
        try:
            observer = Observer()
            observer.schedule(
                _EventHandler(self), self._root, recursive=True, event_filter=_EVENT_FILTER
            )
            observer.start()
        except OSError as exc:
            if observer is not None:
                with contextlib.suppress(RuntimeError):
                    observer.stop()
            self._release()
            if folder_identity(self.folder) != self._identity:
                self._report_gone()
                return
            self._trouble(
                describe_limit_error(exc, self._root)
                or f"cannot watch {self._root}: {exc.strerror or exc}; "
                "changes are found by periodic rescans"
            )
            return
        self._observer = observer
        try:  # created after the observer, so that it never takes the observer's instance
            self._probe = _InotifyProbe()
        except OSError as exc:
            log.info("watch_limit_probe_unavailable", folder=self._root, error=str(exc))
        self._check_limits()
        self._monitor = threading.Thread(
            target=self._monitor_loop, name=f"syncd-watch:{self.folder.name}", daemon=True
        )
        self._monitor.start()
        log.info("watch_started", folder=self._root)

    def stop(self) -> None:
        """Stop watching and give the inotify watches back."""
        self._stopping.set()
        self._wake.set()
        self._stop_observer()
        monitor = self._monitor
        if monitor is not None and monitor is not threading.current_thread():
            monitor.join(timeout=5)
        self._release()

    def _monitor_loop(self) -> None:
        """Polls the folder's identity: a moved-away root or an unmount sends no event."""
        next_limit_check = time.monotonic() + self._limit_interval
        while not self._stopping.is_set():
            self._wake.wait(self._root_interval)
            self._wake.clear()
            if self._stopping.is_set():
                return
            if folder_identity(self.folder) != self._identity:
                self._stopping.set()
                self._stop_observer()
                self._release()
                self._report_gone()
                return
            if time.monotonic() >= next_limit_check:
                next_limit_check = time.monotonic() + self._limit_interval
                self._check_limits()

    def _on_event(self, event: FileSystemEvent) -> None:
        """Observer thread: one watchdog event becomes zero, one or two hints."""
        if self._stopping.is_set():
            return
        raw_paths = [event.src_path]
        if isinstance(event, FileMovedEvent | DirMovedEvent):
            raw_paths.append(event.dest_path)
        for raw in raw_paths:
            path = os.fsdecode(raw)
            if path == self._root:  # the root itself was deleted: check it right away
                self._wake.set()
                continue
            if not path.startswith(self._prefix):
                continue  # "" (the unknown side of a move) or outside the folder
            rel = path[len(self._prefix) :]
            if self._state_rel is not None and hint_covers(self._state_rel + "/", rel):
                continue
            if event.is_directory:
                self._on_hint(rel + SUBTREE_SUFFIX)
            elif not is_ignored_name(rel.rpartition("/")[2], self._ignore):
                self._on_hint(rel)

    def _check_limits(self) -> None:
        """Report once (until it clears) when the user's inotify watches are used up."""
        probe = self._probe
        if probe is None:
            return
        with self._lock:
            if self._probe is None:
                return
            exhausted = probe.watches_exhausted(self._root)
        if exhausted and not self._limit_reported:
            self._trouble(describe_limit_error(OSError(errno.ENOSPC, ""), self._root) or "")
        self._limit_reported = exhausted

    def _trouble(self, reason: str) -> None:
        log.warning("watch_trouble", folder=self._root, reason=reason)
        try:
            self._on_trouble(reason)
        except Exception:
            log.exception("watch_trouble_callback_failed", folder=self._root)

    def _report_gone(self) -> None:
        with self._lock:
            if self._gone_reported:
                return
            self._gone_reported = True
        log.warning("watch_root_gone", folder=self._root)
        try:
            self._on_root_gone()
        except Exception:
            log.exception("watch_root_gone_callback_failed", folder=self._root)

    def _stop_observer(self) -> None:
        with self._lock:
            observer, self._observer = self._observer, None
        if observer is None:
            return
        # RuntimeError: stopping from one of the observer's own threads (a callback).
        with contextlib.suppress(RuntimeError):
            observer.stop()
        if observer is not threading.current_thread():
            with contextlib.suppress(RuntimeError):
                observer.join(timeout=5)

    def _release(self) -> None:
        with self._lock:
            tap, self._tap = self._tap, None
            probe, self._probe = self._probe, None
        if tap is not None:
            logging.getLogger("watchdog.observers").removeHandler(tap)
        if probe is not None:
            probe.close()
