"""sd_notify(3) without a dependency: tell systemd we are ready, alive, reloading, stopping.

The protocol is one datagram per message on the AF_UNIX socket named by
``$NOTIFY_SOCKET``: newline-separated ``KEY=value`` lines. A name starting with ``@`` is
an abstract socket (the ``@`` stands for a leading NUL byte). When the variable is unset
(syncd not started by systemd with ``Type=notify``) every call is a no-op.

What syncd sends and when:

- ``READY=1`` once the first reconcile is done (``Type=notify`` start-up completes);
- ``STATUS=...`` with counts, whenever they change meaningfully;
- ``WATCHDOG=1`` at least every :meth:`SystemdNotifier.watchdog_interval` seconds;
- ``EXTEND_TIMEOUT_USEC=...`` while a long first reconcile runs, so that
  ``TimeoutStartSec=`` does not kill a daemon that is busy hashing a large folder;
- ``RELOADING=1`` + ``MONOTONIC_USEC=...`` on SIGHUP, then ``READY=1`` again;
- ``STOPPING=1`` when a stop signal arrives.

Sending never raises: a daemon must not die because its supervisor went away. Failures
are logged (once per kind) and reported as ``False``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


def _socket_address(value: str) -> str | None:
    """The address to ``sendto()`` for a ``$NOTIFY_SOCKET`` value, None if unusable."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None  # empty, relative, or a kind we do not speak (e.g. "vsock:...")


class SystemdNotifier:
    """Sends sd_notify messages to the socket named in the environment it was given.

    ``environ`` defaults to ``os.environ`` read once at construction; tests pass a dict.
    Thread-safe: each message goes out on its own short-lived socket.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(raw)
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._pid = os.getpid() if pid is None else pid
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()
        if raw and self._address is None:
            self._warn_once("address", f"NOTIFY_SOCKET={raw!r} is not a path or @name")

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to talk to (False: every method is a no-op)."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; True if it was sent."""
        if self._address is None:
            return False
        payload = "\n".join(assignments).encode("utf-8", "surrogateescape")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self._address)
        except OSError as exc:
            self._warn_once(type(exc).__name__, f"sd_notify failed: {exc}")
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete; optionally with a status line."""
        lines = ["READY=1"]
        if status is not None:
            lines.append(_status_line(status))
        return self.notify(*lines)

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status``."""
        return self.notify(_status_line(text))

    def watchdog(self) -> bool:
        """Keep-alive ping; must come within ``WatchdogSec=`` or systemd restarts us."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """A stop was requested; systemd waits up to ``TimeoutStopSec=``."""
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """A reload started; send :meth:`ready` when it is done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` more before the start/stop timeout fires (repeat as needed)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")

    def watchdog_interval(self) -> float | None:
        """How often to call :meth:`watchdog` (half of ``WatchdogSec=``), None if not asked.

        ``WATCHDOG_PID``, when set, must name this process: a child that inherited the
        environment must not ping on the daemon's behalf.
        """
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != self._pid:
                    return None
            except ValueError:
                return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        return usec / 2 / 1_000_000 if usec > 0 else None

    def _warn_once(self, kind: str, message: str) -> None:
        with self._warn_lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        log.warning("sd_notify_unavailable", reason=message)


def _status_line(text: str) -> str:
    """``STATUS=`` takes one line: newlines would start a new assignment."""
    return "STATUS=" + " ".join(text.splitlines())
