"""``syncd run``: the daemon loop. Thin: it only schedules passes the engine carries out.

Start: open every mirror's ledger (a second daemon on the same folder is refused), open
the remote, start each watcher, run a full pass per mirror (catching up on what changed
while syncd was stopped), then ``READY=1`` with the status line. Then loop: wait on one
``threading.Event`` until a runner has work (a quiet hint, the rescan timer, a retry
whose backoff ran out), a signal arrives, or the key file changes; run the due passes
(see ``syncd.daemon.mirror``); publish ``STATUS=`` when it changed, and during a long
pass at most every ``PROGRESS_STATUS_SECONDS`` (so that "uploads paced at 600/min
(server limit)" shows while a first mirror of many files is being paced).

- **Stop** (first SIGTERM/SIGINT, on the signal thread): ``STOPPING=1``, no new action
  starts, in-flight uploads finish, the loop ends and the process exits 0. If that takes
  longer than ``STOP_GRACE_SECONDS`` the process exits 0 anyway, abandoning what is in
  flight: the write-ahead intents make that as safe as a crash, and the next start
  reconciles them. A second signal exits at once (``syncd.daemon_support.SignalRelay``).
- **Reload** (SIGHUP): ``RELOADING=1``; re-read the config (a bad one is logged and the
  old one kept), rebuild the mirrors whose settings changed, add and drop mirrors,
  re-read the API key; ``READY=1``.
- **Key rejected** (401/403, ``FatalError``): every mirror pauses (one shared remote),
  logged once, ``STATUS=paused: API key rejected ...``. Watching goes on and hints keep
  reaching the ledger. It resumes, with a full pass per mirror, after SIGHUP or when the
  key file (``OPENAI_API_KEY_FILE`` or the systemd credential) changes.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import structlog

from syncd.config import MirrorConfig
from syncd.daemon.keepalive import Heartbeat, Keepalive
from syncd.daemon.mirror import MirrorRunner
from syncd.daemon.notify import SystemdNotifier
from syncd.daemon.status import status_line
from syncd.errors import ConfigError, SyncdError
from syncd.paths import ledger_path
from syncd.remote.protocol import FilesRemote
from syncd.state.ledger import Ledger
from syncd.sync.pacing_log import pacing_of

log = structlog.get_logger(__name__)

STOP_GRACE_SECONDS = 8.0
KEY_POLL_SECONDS = 2.0
PROGRESS_STATUS_SECONDS = 1.0


class RemoteSource(Protocol):
    """Where the daemon's remote comes from (built by the command from its options)."""

    def open(self) -> FilesRemote:
        """The remote to use; ConfigError for a missing key or a bad URL."""

    def reload(self) -> FilesRemote | None:
        """Re-read the settings; a new remote if they changed (the old one is closed)."""

    def key_stamp(self) -> Hashable:
        """Changes whenever a key file that could hold the key changes."""

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
    ) -> None:
        self._initial = list(mirrors)
        self._load_mirrors = load_mirrors
        self._remote_source = remote_source
        self._env = env
        self._notifier = notifier or SystemdNotifier()
        self._accept_folder_change = accept_folder_change
        self._heartbeat = Heartbeat()
        self._keepalive = Keepalive(self._notifier, self._heartbeat)
        self._wake = threading.Event()
        self._waiting_until = math.inf  # monotonic deadline of the loop's wait (inf: busy)
        self._stopping = threading.Event()
        self._reload_requested = threading.Event()
        self._runners: dict[Path, MirrorRunner] = {}
        self._remote: FilesRemote | None = None
        self._auth_paused: str | None = None
        self._key_stamp: Hashable = None
        self._next_key_poll = 0.0
        self._published = ""
        self._ready = False
        self._next_progress = 0.0

    # -- called from other threads -------------------------------------------------------

    def request_stop(self, signum: int = 0) -> None:
        """Begin a graceful stop (the signal thread calls this on SIGTERM/SIGINT)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("stopping", signal=signum or None)
        self._notifier.stopping()
        for runner in list(self._runners.values()):
            runner.request_stop()
        self._wake.set()
        deadline = threading.Thread(target=self._force_exit, name="syncd-stop", daemon=True)
        deadline.start()

    def request_reload(self) -> None:
        """Reload at the next turn of the loop (the signal thread calls this on SIGHUP)."""
        self._reload_requested.set()
        self._wake.set()

    def _wake_for(self, due: float) -> None:
        """A runner has work due at ``due`` (monotonic): wake the loop if it sleeps longer."""
        if due < self._waiting_until:
            self._wake.set()

    def _force_exit(self) -> None:
        time.sleep(STOP_GRACE_SECONDS)  # the loop normally ends long before
        log.warning(
            "stop_forced",
            seconds=STOP_GRACE_SECONDS,
            reason="in-flight transfers abandoned; their intents are reconciled at next start",
        )
        os._exit(0)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Mirror until stopped; 0 after a graceful stop."""
        ledgers: list[tuple[MirrorConfig, Ledger]] = []
        try:  # the ledgers first: a second daemon on a folder fails before anything starts
            for mirror in self._initial:
                ledgers.append((mirror, self._open_ledger(mirror)))
            self._remote = self._remote_source.open()
        except BaseException:
            for _, ledger in ledgers:
                ledger.close()
            self._remote_source.close()
            raise
        try:
            for mirror, ledger in ledgers:
                self._add_runner(mirror, ledger, self._remote)
            self._keepalive.start()
            self._published = self._status_text()
            self._notifier.status(self._published)
            for runner in self._runners.values():
                runner.prepare(accept_folder_change=self._accept_folder_change)
            self._work()  # the first full pass of every mirror
            if not self._stopping.is_set():
                self._ready = True
                status = self._status_text()
                self._notifier.ready(status)
                self._keepalive.mark_ready()
                self._published = status
                log.info("ready", mirrors=len(self._runners), status=status)
            self._loop()
        finally:
            self._keepalive.stop()
            for runner in self._runners.values():
                with contextlib.suppress(Exception):
                    runner.close()
            self._runners.clear()
            self._remote_source.close()
        log.info("stopped")
        return 0

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            self._waiting_until = math.inf
            if self._reload_requested.is_set():
                self._reload()
            if self._auth_paused and self._key_file_changed():
                self._reload_remote()
                self._resume_auth("the key file changed")
            worked = self._work()
            self._publish_status()
            if worked:
                continue
            timeout = self._next_timeout()
            now = time.monotonic()
            self._waiting_until = math.inf if timeout is None else now + timeout
            self._heartbeat.set_idle(True)
            self._wake.wait(timeout)
            self._heartbeat.set_idle(False)

    def _work(self) -> bool:
        """Flush hints and run every pass that is due; True if any pass ran."""
        worked = False
        for runner in list(self._runners.values()):
            runner.flush_hints()
            if self._stopping.is_set() or self._auth_paused:
                continue
            result = runner.step()
            self._heartbeat.beat()
            if result is None:
                continue
            worked = True
            if result.fatal:
                self._pause_auth(result.fatal)
        return worked

    def _next_timeout(self) -> float | None:
        if self._auth_paused:
            return KEY_POLL_SECONDS
        waits = [w for r in self._runners.values() if (w := r.due_in(time.monotonic())) is not None]
        return min(waits) if waits else None

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
            for runner in self._runners.values():
                runner.rebind(remote)
            log.info("remote_reloaded")

    def _resume_auth(self, why: str) -> None:
        if self._auth_paused is None:
            return
        log.info("resumed", reason=why)
        self._auth_paused = None
        for runner in self._runners.values():
            runner.request_full()

    # -- reload --------------------------------------------------------------------------

    def _reload(self) -> None:
        self._reload_requested.clear()
        self._notifier.reloading()
        log.info("reloading")
        try:
            mirrors = {m.folder: m for m in self._load_mirrors()}
        except SyncdError as exc:
            log.error("reload_failed", error=str(exc), action="kept the running configuration")
            mirrors = {folder: r.config for folder, r in self._runners.items()}
        self._reload_remote()
        for folder, runner in list(self._runners.items()):
            if mirrors.get(folder) != runner.config:
                runner.close()
                del self._runners[folder]
                log.info(
                    "mirror_removed" if folder not in mirrors else "mirror_changed",
                    folder=str(folder),
                )
        for folder, mirror in mirrors.items():
            if folder not in self._runners and self._remote is not None:
                try:
                    runner = self._add_runner(mirror, self._open_ledger(mirror), self._remote)
                except SyncdError as exc:
                    log.error("mirror_start_failed", folder=str(folder), error=str(exc))
                    continue
                runner.prepare()
        self._resume_auth("reloaded")
        status = self._status_text()
        self._notifier.ready(status)
        self._published = status
        log.info("reloaded", mirrors=len(self._runners))

    def _open_ledger(self, mirror: MirrorConfig) -> Ledger:
        return Ledger.open(ledger_path(mirror.folder, mirror.state_path, self._env))

    def _add_runner(
        self, mirror: MirrorConfig, ledger: Ledger, remote: FilesRemote
    ) -> MirrorRunner:
        runner = MirrorRunner(
            mirror,
            ledger,
            remote,
            wake=self._wake_for,
            heartbeat=self._heartbeat,
            stopping=self._stopping,
            on_progress=self._progress,
        )
        self._runners[mirror.folder] = runner
        return runner

    # -- status --------------------------------------------------------------------------

    def _status_text(self) -> str:
        pacing = pacing_of(self._remote) if self._remote is not None else ()
        if not self._ready:
            text = f"starting: full reconcile of {len(self._runners)} folder(s)"
            return "; ".join([text, *(p.describe() for p in pacing if p.paced)])
        return status_line([r.status() for r in self._runners.values()], self._auth_paused, pacing)

    def _progress(self) -> None:
        """An action finished inside a pass: publish the status now and then."""
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + PROGRESS_STATUS_SECONDS
            self._publish_status()

    def _publish_status(self) -> None:
        status = self._status_text()
        if status != self._published:
            self._published = status
            self._notifier.status(status)
