"""Liveness: tell a stuck main loop from a busy one, and keep systemd's watchdog fed.

- :class:`Heartbeat` tells a stuck main loop from a busy one: the loop marks itself
  idle while it waits, and every finished action counts as progress.
- :class:`HeartbeatGroup`: the daemon's main loop and one thread per mirror each have
  their heartbeat; the daemon is healthy while every one of them is.
- :class:`Keepalive` sends ``WATCHDOG=1`` (and, until ``READY=1``, ``EXTEND_TIMEOUT_USEC``)
  only while the heartbeat is healthy, so systemd restarts a daemon that hangs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from syncd.daemon.notify import SystemdNotifier

log = structlog.get_logger(__name__)

# A pass that finishes no action for this long is taken for hung. It must exceed the
# longest legitimate silence: one HTTP request may take up to its 600 s timeout, and a
# full scan of a large folder reports nothing until it has planned.
STALL_SECONDS = 900.0
# While the first reconcile runs, ask systemd for this much more start time, this often.
EXTEND_SECONDS = 60.0
EXTEND_EVERY_SECONDS = 10.0


class Heartbeat:
    """Whether the main loop is alive: idle in its wait, or busy and making progress."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._idle = False
        self._last = clock()

    def beat(self) -> None:
        """Progress was made (called from worker threads too; a float store is atomic)."""
        self._last = self._clock()

    def set_idle(self, idle: bool) -> None:
        self._idle = idle
        self._last = self._clock()

    def healthy(self, stall_limit: float = STALL_SECONDS) -> bool:
        return self._idle or self._clock() - self._last < stall_limit


class HeartbeatGroup:
    """Healthy while every member is: one stuck mirror thread withholds the watchdog."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: list[Heartbeat] = []

    def add(self, heartbeat: Heartbeat) -> None:
        with self._lock:
            self._members.append(heartbeat)

    def discard(self, heartbeat: Heartbeat) -> None:
        with self._lock:
            self._members = [m for m in self._members if m is not heartbeat]

    def healthy(self, stall_limit: float = STALL_SECONDS) -> bool:
        with self._lock:
            members = list(self._members)
        return all(m.healthy(stall_limit) for m in members)


class Keepalive:
    """Pings systemd's watchdog while the heartbeat is healthy; extends the start timeout
    until :meth:`mark_ready`. Does nothing without ``$NOTIFY_SOCKET``."""

    def __init__(
        self,
        notifier: SystemdNotifier,
        heartbeat: Heartbeat | HeartbeatGroup,
        *,
        stall_limit: float = STALL_SECONDS,
    ) -> None:
        self._notifier = notifier
        self._heartbeat = heartbeat
        self._stall_limit = stall_limit
        self._interval = notifier.watchdog_interval()
        self._ready = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stall_reported = False

    def start(self) -> None:
        if not self._notifier.enabled:
            return
        self._thread = threading.Thread(target=self._loop, name="syncd-keepalive", daemon=True)
        self._thread.start()

    def mark_ready(self) -> None:
        self._ready = True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _tick(self) -> float:
        tick = self._interval if self._interval is not None else EXTEND_EVERY_SECONDS
        return tick if self._ready else min(tick, EXTEND_EVERY_SECONDS)

    def _loop(self) -> None:
        while True:
            if self._heartbeat.healthy(self._stall_limit):
                self._stall_reported = False
                if self._interval is not None:
                    self._notifier.watchdog()
                if not self._ready:
                    self._notifier.extend_timeout(EXTEND_SECONDS)
            elif not self._stall_reported:
                self._stall_reported = True
                log.error(
                    "main_loop_stalled",
                    seconds=self._stall_limit,
                    reason="no progress; withholding WATCHDOG=1 so that systemd restarts syncd",
                )
            if self._stop.wait(self._tick()):
                return
