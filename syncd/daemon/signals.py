"""Signals for the daemon: SIGTERM/SIGINT stop it, SIGHUP reloads it.

:class:`SignalRelay` handles the three on a thread of its own, so no Python signal
handler ever runs in the middle of the main loop's lock-holding code. The first stop
signal calls ``on_stop``; a second one ends the process at once
(``os._exit(128 + signum)``). A callback that raises never ends the relay thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNAL = signal.SIGHUP


class SignalRelay:
    """Relays SIGTERM/SIGINT/SIGHUP to a dedicated thread. Use as a context manager in
    the main thread.

    The C-level handler writes each signal's number into a pipe
    (``signal.set_wakeup_fd``), whichever thread the kernel picked (native threads of
    libraries included), and the relay thread reads it there. The Python-level handler
    is a no-op, so nothing runs in the middle of the main loop's lock-holding code.

    After a stop signal the relay stays in place when the block ends (unless
    ``keep_after_stop`` is False), so that a second signal during the process's final
    clean-up still exits at once rather than meeting the default disposition. With
    ``hangup_stops`` SIGHUP is a stop signal too (``on_reload`` is then never called).
    """

    def __init__(
        self,
        on_stop: Callable[[int], None],
        on_reload: Callable[[], None],
        *,
        keep_after_stop: bool = True,
        hangup_stops: bool = False,
    ) -> None:
        self._on_stop = on_stop
        self._keep_after_stop = keep_after_stop
        self._on_reload = on_reload
        self._signals = (*STOP_SIGNALS, RELOAD_SIGNAL)
        # A one-shot command has nothing to reload: a hang-up (closed terminal, dropped
        # ssh session) is a stop like the others.
        self._stop_signals = (*STOP_SIGNALS, RELOAD_SIGNAL) if hangup_stops else STOP_SIGNALS
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
        """Run the callback for ``signum``. Nothing a callback raises may end the relay
        thread (signals would go unanswered): a stop that cannot be set in motion exits at
        once, as a second signal would; a failed reload is reported and the loop goes on."""
        name = signal.Signals(signum).name
        if signum in self._stop_signals:
            if self._stop_seen:
                _write_stderr(f"syncd: second {name}, exiting now\n")
                os._exit(128 + signum)
            self._stop_seen = True
            try:
                self._on_stop(signum)
            except BaseException as exc:  # the stop is not in motion: do not hang
                _write_stderr(f"syncd: {name}: cannot stop gracefully ({exc!r}), exiting now\n")
                os._exit(128 + signum)
        elif signum == RELOAD_SIGNAL and not self._stop_seen:
            try:
                self._on_reload()
            except Exception as exc:
                _write_stderr(f"syncd: {name}: reload failed ({exc!r})\n")


def _no_op(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the relay thread does the work (see SignalRelay)."""


def _write_stderr(text: str) -> None:
    """A plain write(2): safe whatever lock another thread holds in the logging stack."""
    with contextlib.suppress(OSError):
        os.write(2, text.encode())
