"""One thread per mirror: a :class:`MirrorWorker` runs its :class:`MirrorRunner`'s passes.

The daemon used to step every runner in turn on one thread, so a 2 GB upload in one
folder held back a one-line change in another until it was done. Each mirror now has
its own thread; what they share is the remote (one ``Transport``: one connection pool,
one ``RetryGate``, so a 429 seen by one mirror still pauses them all) and the daemon's
pauses (the key refused, the remote unusable), which a worker asks about before every
pass through ``may_work``.

The worker's loop: apply what the daemon posted (a new remote, new settings), write
the hints noted since the last turn to the ledger, run the pass that is due (if the
daemon is not paused), report its result, and otherwise sleep on its own event until
the runner has work (``MirrorRunner.due_in``), a hint arrives or the daemon wakes it.

Everything that touches the runner happens on this thread, so nothing races a pass:

- **new settings** (a reload changed this mirror): the runner is closed and rebuilt
  after the pass in progress ends, never under it (``replace``); ``None`` retires the
  worker (the mirror was removed from the config).
- **a new remote** (a new key): taken at the next pass (``rebind``).
- **stop**: the daemon calls ``request_stop`` (the engine stops starting actions; those
  in flight get its grace) and joins the thread.

A runner that raises a bug out of ``step`` is logged with its traceback and tried again
after ``ERROR_RETRY_SECONDS``: one mirror's bug never stops the others.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from syncd.config import MirrorConfig
from syncd.daemon.keepalive import Heartbeat
from syncd.daemon.mirror import MirrorRunner
from syncd.daemon.status import MirrorStatus
from syncd.errors import SyncdError
from syncd.remote.protocol import FilesRemote
from syncd.sync.result import PassResult

log = structlog.get_logger(__name__)

ERROR_RETRY_SECONDS = 60.0
JOIN_SECONDS = 10.0


class WakeRelay:
    """The wake callback a runner is built with, pointed at its worker once that exists."""

    def __init__(self) -> None:
        self.target: Callable[[float], None] = lambda due: None

    def __call__(self, due: float) -> None:
        self.target(due)


@dataclass
class _Posted:
    """What the daemon asked for since the worker last looked (guarded by the lock)."""

    remote: FilesRemote | None = None
    replace: bool = False
    config: MirrorConfig | None = None
    full: bool = False


class MirrorWorker:
    """Runs one mirror's passes on a thread of its own (see the module docstring).

    ``may_work()`` says whether passes may run now (the daemon is not paused);
    ``on_result(worker, result)`` gets every pass's result, on this thread;
    ``rebuild(config)`` opens a new runner for changed settings (on this thread, after
    the old runner is closed), or raises ``SyncdError``.
    """

    def __init__(
        self,
        runner: MirrorRunner,
        heartbeat: Heartbeat,
        *,
        stopping: threading.Event,
        may_work: Callable[[], bool],
        on_result: Callable[[MirrorWorker, PassResult], None],
        rebuild: Callable[[MirrorConfig, MirrorWorker], MirrorRunner],
    ) -> None:
        self.runner: MirrorRunner | None = runner
        self.folder = runner.folder
        self.heartbeat = heartbeat
        self._stopping = stopping
        self._may_work = may_work
        self._on_result = on_result
        self._rebuild = rebuild
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._posted = _Posted()
        self._waiting_until = math.inf  # monotonic deadline of the current wait
        self._status = runner.status()
        self.first_pass = threading.Event()  # set once the first step has run
        self.retired = threading.Event()  # the thread has ended (or never started)
        self._thread = threading.Thread(
            target=self._main, name=f"syncd-mirror:{self.folder.name}", daemon=True
        )

    @classmethod
    def build(
        cls,
        make_runner: Callable[[Callable[[float], None], Heartbeat], MirrorRunner],
        **kwargs: Any,
    ) -> MirrorWorker:
        """A worker around ``make_runner(wake, heartbeat)``, whose hints wake it."""
        relay, heartbeat = WakeRelay(), Heartbeat()
        worker = cls(make_runner(relay, heartbeat), heartbeat, **kwargs)
        relay.target = worker.wake_for
        return worker

    # -- called from other threads ---------------------------------------------------

    def prepare(self, *, accept_folder_change: bool = False, create_folder: bool = False) -> None:
        """The runner's preparation (``MirrorRunner.prepare``), before :meth:`start`."""
        if self.runner is not None:
            self.runner.prepare(
                accept_folder_change=accept_folder_change, create_folder=create_folder
            )

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._event.set()

    def wake_for(self, due: float) -> None:
        """Work is due at ``due`` (monotonic): wake the thread if it sleeps longer."""
        if due < self._waiting_until:
            self._event.set()

    def request_full(self) -> None:
        with self._lock:
            self._posted.full = True
        self._event.set()

    def rebind(self, remote: FilesRemote) -> None:
        with self._lock:
            self._posted.remote = remote
        self._event.set()

    def replace(self, config: MirrorConfig | None) -> None:
        """New settings for this mirror (None: retire), applied after the running pass."""
        with self._lock:
            self._posted.replace, self._posted.config = True, config
        runner = self.runner
        if runner is not None and config is None:
            runner.request_stop()  # a removed mirror needs not finish its pass
        self._event.set()

    def request_stop(self) -> None:
        runner = self.runner
        if runner is not None:
            runner.request_stop()
        self._event.set()

    def join(self, timeout: float = JOIN_SECONDS) -> bool:
        """Wait for the thread to end; True if it did."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def config(self) -> MirrorConfig | None:
        runner = self.runner
        return runner.config if runner is not None else None

    def status(self) -> MirrorStatus:
        """The runner's last counts, with the queue depth of now (any thread)."""
        runner = self.runner
        if runner is not None:
            status = runner.status()
            self._status = dataclasses.replace(
                status, queued=max(status.queued, len(runner.queue.aggregator))
            )
        return self._status

    # -- the thread ------------------------------------------------------------------

    def _main(self) -> None:
        structlog.contextvars.bind_contextvars(folder=str(self.folder))
        try:
            while not self._stopping.is_set() and self._turn():
                pass
        finally:
            self.first_pass.set()
            self.heartbeat.set_idle(True)  # an ended thread is not a stuck one
            runner = self.runner
            if runner is not None and not self._stopping.is_set():
                self.runner = None
                runner.close()  # retired; at a stop the daemon closes it after the join
            self.retired.set()

    def _turn(self) -> bool:
        """One turn of the loop; False when the worker is retired."""
        self._event.clear()
        if not self._apply_posted():
            return False
        runner = self.runner
        if runner is None:
            return False
        result: PassResult | None = None
        try:
            runner.flush_hints()
            if self._may_work() and not self._stopping.is_set():
                result = runner.step()
        except Exception:
            log.exception("mirror_step_failed", retry_in=ERROR_RETRY_SECONDS)
            self.first_pass.set()
            self._sleep(ERROR_RETRY_SECONDS)
            return True
        self.heartbeat.beat()
        if result is not None:
            self._on_result(self, result)  # before first_pass: READY=1 shows a pause
        self.first_pass.set()
        if result is not None:
            return True
        self._sleep(runner.due_in(time.monotonic()) if self._may_work() else None)
        return True

    def _sleep(self, timeout: float | None) -> None:
        self._waiting_until = math.inf if timeout is None else time.monotonic() + timeout
        self.heartbeat.set_idle(True)
        try:
            self._event.wait(timeout)
        finally:
            self.heartbeat.set_idle(False)
            self._waiting_until = math.inf

    def _apply_posted(self) -> bool:
        """Carry out what the daemon posted; False if the worker is to end."""
        with self._lock:
            posted, self._posted = self._posted, _Posted()
        runner = self.runner
        if runner is None:
            return False
        if posted.replace:
            self._status = runner.status()
            runner.close()
            self.runner = None
            if posted.config is None:
                log.info("mirror_removed")
                return False
            try:
                self.runner = self._rebuild(posted.config, self)
            except SyncdError as exc:
                log.error("mirror_start_failed", error=str(exc))
                return False
            log.info("mirror_changed")
            return True
        if posted.remote is not None:
            runner.rebind(posted.remote)
        if posted.full:
            runner.request_full()
        return True
