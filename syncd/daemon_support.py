"""The daemon's small machinery: signals, liveness, systemd pings and the status line.

- :class:`SignalRelay` handles SIGTERM/SIGINT/SIGHUP on a thread of its own with
  ``sigwait`` (the signals are blocked everywhere else), so no Python signal handler
  ever runs in the middle of the main loop's lock-holding code. The first stop signal
  calls ``on_stop``; a second one ends the process at once (``os._exit(128 + signum)``).
- :class:`Heartbeat` tells a stuck main loop from a busy one: the loop marks itself
  idle while it waits, and every finished action counts as progress.
- :class:`Keepalive` sends ``WATCHDOG=1`` (and, until ``READY=1``, ``EXTEND_TIMEOUT_USEC``)
  only while the heartbeat is healthy, so systemd restarts a daemon that hangs.
- :func:`status_line` renders the one-line ``STATUS=`` text from per-mirror counts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import structlog

from syncd.notify import SystemdNotifier

log = structlog.get_logger("syncd.daemon")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNAL = signal.SIGHUP

# A pass that finishes no action for this long is taken for hung. It must exceed the
# longest legitimate silence: one HTTP request may take up to its 600 s timeout, and a
# full scan of a large folder reports nothing until it has planned.
STALL_SECONDS = 900.0
# While the first reconcile runs, ask systemd for this much more start time, this often.
EXTEND_SECONDS = 60.0
EXTEND_EVERY_SECONDS = 10.0


class SignalRelay:
    """Relays SIGTERM/SIGINT/SIGHUP to a dedicated thread. Use as a context manager in
    the main thread.

    The C-level handler writes each signal's number into a pipe
    (``signal.set_wakeup_fd``), whichever thread the kernel picked (native threads of
    libraries included), and the relay thread reads it there. The Python-level handler
    is a no-op, so nothing runs in the middle of the main loop's lock-holding code.

    After a stop signal the relay stays in place when the block ends (unless
    ``keep_after_stop`` is False), so that a second signal during the process's final
    clean-up still exits at once rather than meeting the default disposition.
    """

    def __init__(
        self,
        on_stop: Callable[[int], None],
        on_reload: Callable[[], None],
        *,
        keep_after_stop: bool = True,
    ) -> None:
        self._on_stop = on_stop
        self._keep_after_stop = keep_after_stop
        self._on_reload = on_reload
        self._signals = (*STOP_SIGNALS, RELOAD_SIGNAL)
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1
        self._pipe: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._stop_seen = False

    def __enter__(self) -> SignalRelay:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(write_fd, False)
        self._pipe = (read_fd, write_fd)
        self._previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for signum in self._signals:
            self._previous[signum] = signal.signal(signum, _no_op)
        self._thread = threading.Thread(
            target=self._loop, args=(read_fd,), name="syncd-signals", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop_seen and self._keep_after_stop:
            return  # the process is on its way out: a second signal still exits at once
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._closing = True
        if self._pipe is not None:
            read_fd, write_fd = self._pipe
            with contextlib.suppress(OSError):
                os.write(write_fd, b"\0")  # wakes the relay thread, which sees _closing
            if self._thread is not None:
                self._thread.join(timeout=5)
            os.close(write_fd)
            os.close(read_fd)

    def _loop(self, read_fd: int) -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if self._closing:
                    return
                self._dispatch(signum)

    def _dispatch(self, signum: int) -> None:
        if signum in STOP_SIGNALS:
            if self._stop_seen:
                _write_stderr(f"syncd: second {signal.Signals(signum).name}, exiting now\n")
                os._exit(128 + signum)
            self._stop_seen = True
            self._on_stop(signum)
        elif signum == RELOAD_SIGNAL and not self._stop_seen:
            self._on_reload()


def _no_op(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the relay thread does the work (see SignalRelay)."""


def _write_stderr(text: str) -> None:
    """A plain write(2): safe whatever lock another thread holds in the logging stack."""
    with contextlib.suppress(OSError):
        os.write(2, text.encode())


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


class Keepalive:
    """Pings systemd's watchdog while the heartbeat is healthy; extends the start timeout
    until :meth:`mark_ready`. Does nothing without ``$NOTIFY_SOCKET``."""

    def __init__(
        self,
        notifier: SystemdNotifier,
        heartbeat: Heartbeat,
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


@dataclass(frozen=True)
class MirrorStatus:
    """What one mirror contributes to the status line."""

    folder: str
    mirrored: int
    pending: int
    failed: int
    retrying: int = 0
    next_retry_in: float | None = None
    paused: str | None = None
    refusal: str | None = None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def status_line(mirrors: Sequence[MirrorStatus], paused: str | None = None) -> str:
    """``paused: ...; mirrored N files, M pending, K failed`` (one line, for STATUS=)."""
    parts: list[str] = []
    if paused:
        parts.append(f"paused: {paused}")
    parts += [f"paused: {m.paused}" for m in mirrors if m.paused]
    parts += [m.refusal for m in mirrors if m.refusal]
    counts = (
        f"mirrored {_plural(sum(m.mirrored for m in mirrors), 'file')}"
        + (f" in {len(mirrors)} folders" if len(mirrors) > 1 else "")
        + f", {sum(m.pending for m in mirrors)} pending"
        + f", {sum(m.failed for m in mirrors)} failed"
    )
    retrying = sum(m.retrying for m in mirrors)
    waits = [m.next_retry_in for m in mirrors if m.next_retry_in is not None]
    if retrying and waits:
        counts += f" ({retrying} retrying, next in {max(0, round(min(waits)))} s)"
    elif retrying:
        counts += f" ({retrying} retrying)"
    parts.append(counts)
    return "; ".join(parts)
