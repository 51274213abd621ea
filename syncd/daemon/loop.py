"""``syncd run``: the daemon loop. Thin: it only schedules passes the engine carries out.

Start: open every mirror's ledger (a second daemon on the same folder is refused), open
the remote, start each watcher, then one thread per mirror (``syncd.daemon.worker``),
which begins with a full pass (catching up on what changed while syncd was stopped);
once every mirror's first pass is done, ``READY=1`` with the status line. The mirrors
run concurrently over one shared remote (one connection pool, one ``RetryGate``, one
pacing), so a long upload in one folder never delays a change in another. The main
thread only handles signals' requests, the pauses below and the status: it waits on one
``threading.Event`` until a worker finished a pass, a signal arrives, or the key file
or the remote's backoff is due; publishes ``STATUS=`` when it changed, and during a long
pass at most every ``PROGRESS_STATUS_SECONDS`` (so that "uploads paced at 600/min
(server limit)" shows while a first mirror of many files is being paced).

- **Stop** (first SIGTERM/SIGINT, on the signal thread): ``STOPPING=1``, no new action
  starts, in-flight uploads finish, the loop ends and the process exits 0. If that takes
  longer than ``STOP_GRACE_SECONDS`` the process exits 0 anyway, abandoning what is in
  flight: the write-ahead intents make that as safe as a crash, and the next start
  reconciles them. A second signal exits at once (``syncd.daemon_support.SignalRelay``).
- **Reload** (SIGHUP): ``RELOADING=1``; re-read the config (a bad one is logged and the
  old one kept), rebuild the mirrors whose settings changed (each on its own thread,
  once its running pass has ended: a reload never races a pass), add and drop mirrors,
  re-read the API key (a new remote is taken by each mirror at its next pass);
  ``READY=1``.
- **Key rejected** (401/403, ``FatalError``): every mirror pauses (one shared remote),
  logged once, ``STATUS=paused: API key rejected ...``. Watching goes on and hints keep
  reaching the ledger. It resumes, with a full pass per mirror, after SIGHUP or when the
  key file (``OPENAI_API_KEY_FILE`` or the systemd credential) changes.
- **Remote unusable** (``WrongEndpointError``: the base URL answers 404; or
  ``UnreachableError``: a full pass cannot list the files): no file is marked failed;
  every mirror pauses, logged once per reason, ``STATUS=paused: ...; next try in N s``.
  The daemon does not exit (``Restart=on-failure`` would only loop): it tries again
  with a full pass after ``REMOTE_RETRY_FIRST_SECONDS``, doubling up to
  ``REMOTE_RETRY_MAX_SECONDS``, or at once on SIGHUP.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

import structlog

from syncd.config import MirrorConfig
from syncd.daemon.keepalive import Heartbeat, HeartbeatGroup, Keepalive
from syncd.daemon.mirror import MirrorRunner
from syncd.daemon.notify import SystemdNotifier
from syncd.daemon.observer import DaemonObserver
from syncd.daemon.status import MirrorStatus, status_line
from syncd.daemon.worker import MirrorWorker
from syncd.errors import ConfigError, FatalError, SyncdError
from syncd.log import dropped_lines
from syncd.paths import ledger_path
from syncd.remote.identity import RemoteIdentity
from syncd.remote.protocol import FilesRemote
from syncd.state.ledger import Ledger
from syncd.sync.binding import bind_remote
from syncd.sync.pacing_log import pacing_of
from syncd.sync.progress import ProgressReporter
from syncd.sync.result import PassResult

log = structlog.get_logger(__name__)

STOP_GRACE_SECONDS = 8.0  # longer than the engine's grace: the pass is recorded first
KEY_POLL_SECONDS = 2.0
REMOTE_RETRY_FIRST_SECONDS = 10.0
REMOTE_RETRY_MAX_SECONDS = 600.0
PROGRESS_STATUS_SECONDS = 1.0
# While nothing is paused the main loop wakes this often anyway, to refresh the status
# line's countdowns ("retrying, next in N s").
STATUS_REFRESH_SECONDS = 5.0


class RemoteSource(Protocol):
    """Where the daemon's remote comes from (built by the command from its options)."""

    def open(self) -> FilesRemote:
        """The remote to use; ConfigError for a missing key or a bad URL."""

    def reload(self) -> FilesRemote | None:
        """Re-read the settings; a new remote if they changed (the old one is closed)."""

    def key_stamp(self) -> Hashable:
        """Changes whenever a key file that could hold the key changes."""

    def identity(self) -> RemoteIdentity:
        """The remote as a ledger records it (``syncd.sync.binding``)."""

    def close(self) -> None: ...


class Daemon:
    """Runs mirrors until stopped; see the module docstring."""

    def __init__(
        self,
        mirrors: Sequence[MirrorConfig],
        load_mirrors: Callable[[], Sequence[MirrorConfig]],
        remote_source: RemoteSource,
        *,
        env: Mapping[str, str],
        notifier: SystemdNotifier | None = None,
        accept_folder_change: bool = False,
        switch_remote: bool = False,
        create_folder: bool = False,
        progress_stream: IO[str] | None = None,
        observer: DaemonObserver | None = None,
    ) -> None:
        self._initial = list(mirrors)
        self._load_mirrors = load_mirrors
        self._remote_source = remote_source
        self._env = env
        self._notifier = notifier or SystemdNotifier()
        self._accept_folder_change = accept_folder_change
        self._switch_remote = switch_remote
        self._create_folder = create_folder
        self._progress_stream = progress_stream  # a terminal: long passes show a bar
        self._observer = observer
        self._heartbeat = Heartbeat()  # the main loop's own
        self._heartbeats = HeartbeatGroup()
        self._heartbeats.add(self._heartbeat)
        self._keepalive = Keepalive(self._notifier, self._heartbeats)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._reload_requested = threading.Event()
        self._lock = threading.RLock()  # the pauses, as the workers report passes
        self._workers: dict[Path, MirrorWorker] = {}
        self._retiring: list[MirrorWorker] = []
        self._remote: FilesRemote | None = None
        self._auth_paused: str | None = None
        self._remote_paused: str | None = None  # why the remote cannot be used
        self._remote_failures = 0  # full passes in a row that found it unusable
        self._remote_retry_at = 0.0  # monotonic
        self._remote_last_reason: str | None = None  # said once until it answers again
        self._key_stamp: Hashable = None
        self._next_key_poll = 0.0
        self._published = ""
        self._ready = False
        self._next_progress = 0.0
        self._status_lock = threading.Lock()

    # -- called from other threads -------------------------------------------------------

    def request_stop(self, signum: int = 0) -> None:
        """Begin a graceful stop (the signal thread calls this on SIGTERM/SIGINT)."""
        if self._stopping.is_set():
            return
        # Everything that stops the daemon first, and only then the log line and the
        # notification: nothing that reports the stop may keep it from happening.
        self._stopping.set()
        for worker in self._all_workers():
            worker.request_stop()
        self._wake.set()
        deadline = threading.Thread(target=self._force_exit, name="syncd-stop", daemon=True)
        deadline.start()
        self._notifier.stopping()
        log.info("stopping", signal=signum or None)

    def request_reload(self) -> None:
        """Reload at the next turn of the loop (the signal thread calls this on SIGHUP)."""
        self._reload_requested.set()
        self._wake.set()

    def _force_exit(self) -> None:
        time.sleep(STOP_GRACE_SECONDS)  # the loop normally ends long before
        log.warning(
            "stop_forced",
            seconds=STOP_GRACE_SECONDS,
            reason="in-flight transfers abandoned; their intents are reconciled at next start",
        )
        os._exit(0)

    def _may_work(self) -> bool:
        """Whether a worker may run a pass now (no pause, no stop)."""
        return not (self._stopping.is_set() or self._auth_paused or self._remote_paused)

    def _on_result(self, worker: MirrorWorker, result: PassResult) -> None:
        """A worker's pass ended (on its thread): pause when it found the key or the
        remote unusable; wake the main loop for the status line."""
        with self._lock:
            if result.fatal and result.fatal_cause == FatalError.cause:
                self._pause_auth(result.fatal)
            elif result.fatal:
                self._pause_remote(result.fatal)
            elif self._remote_failures and not result.interrupted:
                log.info("resumed", reason="the remote answers again")
                self._remote_failures = 0
                self._remote_last_reason = None
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Mirror until stopped; 0 after a graceful stop."""
        ledgers: list[tuple[MirrorConfig, Ledger]] = []
        try:  # the ledgers first: a second daemon on a folder fails before anything starts
            for mirror in self._initial:
                ledgers.append((mirror, self._open_ledger(mirror)))
            self._remote = self._remote_source.open()
            for _, ledger in ledgers:  # a ledger of another remote: refused before any pass
                self._bind(ledger, self._remote)
        except BaseException:
            for _, ledger in ledgers:
                ledger.close()
            self._remote_source.close()
            raise
        try:
            for mirror, ledger in ledgers:
                self._add_worker(mirror, ledger, self._remote)
            self._keepalive.start()
            self._published = self._status_text()
            self._notifier.status(self._published)
            for worker in self._workers.values():
                worker.prepare(
                    accept_folder_change=self._accept_folder_change,
                    create_folder=self._create_folder,
                )
            for worker in self._workers.values():
                worker.start()
            self._wait_first_passes()
            if not self._stopping.is_set():
                self._ready = True
                status = self._status_text()
                self._notifier.ready(status)
                self._keepalive.mark_ready()
                self._published = status
                log.info("ready", mirrors=len(self._workers), status=status)
            self._loop()
        finally:
            self._stop_workers()
            self._keepalive.stop()
            self._remote_source.close()
        log.info("stopped", log_lines_dropped=dropped_lines())
        return 0

    def _wait_first_passes(self) -> None:
        """Until every mirror ran its first pass (or a stop): READY=1 means caught up."""
        for worker in list(self._workers.values()):
            while not self._stopping.is_set() and not worker.first_pass.wait(0.5):
                self._heartbeat.beat()
                self._publish_status()

    def _stop_workers(self) -> None:
        """Join the mirror threads (their engines were told to stop), then close them."""
        for worker in self._all_workers():
            worker.request_stop()
        self._stopping.set()  # a failed start: the workers must end too
        for worker in self._all_workers():
            if worker.join(STOP_GRACE_SECONDS) and worker.runner is not None:
                with contextlib.suppress(Exception):
                    worker.runner.close()
        self._workers.clear()
        self._retiring.clear()

    def _all_workers(self) -> list[MirrorWorker]:
        return [*self._workers.values(), *self._retiring]

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            if self._reload_requested.is_set():
                self._reload()
            with self._lock:
                if self._auth_paused and self._key_file_changed():
                    self._reload_remote()
                    self._resume_auth("the key file changed")
                if self._remote_paused and time.monotonic() >= self._remote_retry_at:
                    self._try_remote_again()
            for worker in [w for w in self._retiring if w.retired.is_set()]:
                self._heartbeats.discard(worker.heartbeat)
            self._retiring = [w for w in self._retiring if not w.retired.is_set()]
            self._publish_status()
            self._heartbeat.set_idle(True)
            self._wake.wait(self._next_timeout())
            self._heartbeat.set_idle(False)

    def _next_timeout(self) -> float | None:
        if self._auth_paused:
            return KEY_POLL_SECONDS
        if self._remote_paused:
            return max(0.0, self._remote_retry_at - time.monotonic())
        return STATUS_REFRESH_SECONDS  # "next try in N s", "retrying, next in N s"

    # -- the key -------------------------------------------------------------------------

    def _pause_auth(self, reason: str) -> None:
        if self._auth_paused is None:
            log.error(
                "api_key_rejected",
                reason=reason,
                action="uploads paused; fix the key, then reload (SIGHUP, systemctl reload "
                "syncd) or replace the key file",
            )
        self._auth_paused = f"API key rejected ({reason}); fix the key, then reload"
        self._key_stamp = self._remote_source.key_stamp()

    def _key_file_changed(self) -> bool:
        now = time.monotonic()
        if now < self._next_key_poll:
            return False
        self._next_key_poll = now + KEY_POLL_SECONDS
        return self._remote_source.key_stamp() != self._key_stamp

    def _reload_remote(self) -> None:
        try:
            remote = self._remote_source.reload()
        except ConfigError as exc:
            log.error("key_reload_failed", error=str(exc))
            return
        if remote is not None:
            self._remote = remote
            for worker in self._workers.values():
                worker.rebind(remote)
            log.info("remote_reloaded")

    def _resume_auth(self, why: str) -> None:
        if self._auth_paused is None:
            return
        log.info("resumed", reason=why)
        self._auth_paused = None
        for worker in self._workers.values():
            worker.request_full()

    # -- the remote ----------------------------------------------------------------------

    def _pause_remote(self, reason: str) -> None:
        """A pass found the remote unusable (wrong URL, down): pause, retry with backoff.
        Counted once per try: the other mirrors' passes of the same try find it too."""
        if self._remote_paused is not None:
            return
        self._remote_failures += 1
        wait = min(
            REMOTE_RETRY_FIRST_SECONDS * 2.0 ** (self._remote_failures - 1),
            REMOTE_RETRY_MAX_SECONDS,
        )
        self._remote_retry_at = time.monotonic() + wait
        if reason != self._remote_last_reason:
            log.error(
                "remote_unusable",
                reason=reason,
                action=f"uploads paused, no file marked failed; trying again in {wait:.0f} s "
                "(doubling up to 10 min; SIGHUP tries at once)",
            )
        else:
            log.info("remote_still_unusable", retry_in=round(wait))
        self._remote_paused = self._remote_last_reason = reason

    def _try_remote_again(self) -> None:
        """The backoff is over (or SIGHUP): every mirror starts again with a full pass."""
        self._remote_paused = None
        for worker in self._workers.values():
            worker.request_full()

    # -- reload --------------------------------------------------------------------------

    def _reload(self) -> None:
        self._reload_requested.clear()
        self._notifier.reloading()
        log.info("reloading")
        try:
            mirrors = {m.folder: m for m in self._load_mirrors()}
        except SyncdError as exc:
            log.error("reload_failed", error=str(exc), action="kept the running configuration")
            mirrors = {folder: w.config for folder, w in self._workers.items() if w.config}
        with self._lock:
            self._reload_remote()
        for folder, worker in list(self._workers.items()):
            if worker.retired.is_set():
                self._heartbeats.discard(worker.heartbeat)
                del self._workers[folder]  # its rebuild failed: started anew below
            elif folder not in mirrors:
                worker.replace(None)  # it ends on its own thread
                self._retiring.append(worker)
                del self._workers[folder]
            elif mirrors[folder] != worker.config:
                worker.replace(mirrors[folder])  # rebuilt once its running pass ends
        for folder, mirror in mirrors.items():
            if folder not in self._workers and self._remote is not None:
                try:
                    ledger = self._open_ledger(mirror)
                    try:
                        self._bind(ledger, self._remote)
                    except BaseException:
                        ledger.close()
                        raise
                    worker = self._add_worker(mirror, ledger, self._remote)
                except SyncdError as exc:
                    log.error("mirror_start_failed", folder=str(folder), error=str(exc))
                    continue
                worker.prepare(create_folder=self._create_folder)
                worker.start()
        with self._lock:
            self._resume_auth("reloaded")
            if self._remote_paused:
                self._try_remote_again()
        for worker in self._workers.values():
            worker.wake()  # e.g. a delete approval recorded meanwhile is looked at now
        status = self._status_text()
        self._notifier.ready(status)
        self._published = status
        log.info("reloaded", mirrors=len(self._workers))

    def _bind(self, ledger: Ledger, remote: FilesRemote) -> None:
        identity = self._remote_source.identity()
        note = bind_remote(ledger, remote, identity, switch=self._switch_remote)
        if note:
            log.warning("remote_changed", ledger=str(ledger.path), note=note)

    def _open_ledger(self, mirror: MirrorConfig) -> Ledger:
        return Ledger.open(ledger_path(mirror.folder, mirror.state_path, self._env))

    def _add_worker(
        self, mirror: MirrorConfig, ledger: Ledger, remote: FilesRemote
    ) -> MirrorWorker:
        def make_runner(wake: Callable[[float], None], heartbeat: Heartbeat) -> MirrorRunner:
            return self._make_runner(mirror, ledger, remote, wake, heartbeat)

        worker = MirrorWorker.build(
            make_runner,
            stopping=self._stopping,
            may_work=self._may_work,
            on_result=self._on_result,
            rebuild=self._rebuild_runner,
        )
        self._heartbeats.add(worker.heartbeat)
        self._workers[mirror.folder] = worker
        return worker

    def _rebuild_runner(self, mirror: MirrorConfig, worker: MirrorWorker) -> MirrorRunner:
        """A changed mirror's new runner (on its worker's thread, the old one closed)."""
        ledger = self._open_ledger(mirror)
        try:
            remote = self._remote
            if remote is None:
                raise SyncdError("no remote")
            self._bind(ledger, remote)
            runner = self._make_runner(mirror, ledger, remote, worker.wake_for, worker.heartbeat)
        except BaseException:
            ledger.close()
            raise
        runner.prepare(create_folder=self._create_folder)
        return runner

    def _make_runner(
        self,
        mirror: MirrorConfig,
        ledger: Ledger,
        remote: FilesRemote,
        wake: Callable[[float], None],
        heartbeat: Heartbeat,
    ) -> MirrorRunner:
        # One progress bar at a time on a terminal: with several mirrors, lines only.
        progress = None
        if self._progress_stream is not None and len(self._initial) == 1:
            progress = ProgressReporter(self._progress_stream)
        return MirrorRunner(
            mirror,
            ledger,
            remote,
            wake=wake,
            heartbeat=heartbeat,
            stopping=self._stopping,
            progress=progress,
            on_progress=self._progress,
            observer=self._observer,
            on_status=self._publish_status,
        )

    # -- status --------------------------------------------------------------------------

    def _status_text(self) -> str:
        paused = self._auth_paused
        if paused is None and self._remote_paused is not None:
            wait = max(0, round(self._remote_retry_at - time.monotonic()))
            paused = f"{self._remote_paused}; next try in {wait} s"
        pacing = pacing_of(self._remote) if self._remote is not None else ()
        if not self._ready:
            text = f"starting: full reconcile of {len(self._workers)} folder(s)"
            return "; ".join([text, *(p.describe() for p in pacing if p.paced)])
        return status_line(
            [w.status() for w in self._workers.values()],
            paused,
            pacing,
            log_lines_dropped=dropped_lines(),
        )

    def _progress(self) -> None:
        """An action finished inside a pass: publish the status now and then."""
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + PROGRESS_STATUS_SECONDS
            self._publish_status()

    def _publish_status(self) -> None:
        """STATUS= if it changed (the main loop's, or a mirror's thread with news)."""
        with self._status_lock:
            status = self._status_text()
            if status != self._published:
                self._published = status
                self._notifier.status(status)

    def statuses(self) -> list[MirrorStatus]:
        """Each mirror's counts now (for the metrics endpoint; any thread)."""
        return [w.status() for w in list(self._workers.values())]
