"""SystemdNotifier speaks sd_notify over a real AF_UNIX datagram socket."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

from syncd.daemon.notify import SystemdNotifier


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd, and its NOTIFY_SOCKET value."""
    directory = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")  # AF_UNIX paths max ~107 bytes
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(directory)


def received(sock: socket.socket) -> list[str]:
    """The next datagram, split into its KEY=value lines."""
    return sock.recv(4096).decode().split("\n")


def test_ready_sends_ready_1(notify_socket: tuple[socket.socket, str]) -> None:
    """ready() sends READY=1 (with an optional STATUS=) to a path socket."""
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready() is True
    assert received(sock) == ["READY=1"]
    assert notifier.ready(status="watching 3 files")
    assert received(sock) == ["READY=1", "STATUS=watching 3 files"]


def test_status_watchdog_and_stopping_messages(notify_socket: tuple[socket.socket, str]) -> None:
    """status(), watchdog() and stopping() send their one-line assignments."""
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    notifier.status("uploaded 4, pending 2")
    assert received(sock) == ["STATUS=uploaded 4, pending 2"]
    notifier.watchdog()
    assert received(sock) == ["WATCHDOG=1"]
    notifier.stopping()
    assert received(sock) == ["STOPPING=1"]


def test_status_is_kept_on_one_line(notify_socket: tuple[socket.socket, str]) -> None:
    """A newline in a status cannot smuggle in another assignment such as READY=1."""
    sock, path = notify_socket
    SystemdNotifier({"NOTIFY_SOCKET": path}).status("bad\nREADY=1")
    assert received(sock) == ["STATUS=bad READY=1"]


def test_reloading_carries_the_monotonic_clock(notify_socket: tuple[socket.socket, str]) -> None:
    """reloading() sends RELOADING=1 and MONOTONIC_USEC= of CLOCK_MONOTONIC, in µs."""
    sock, path = notify_socket
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    SystemdNotifier({"NOTIFY_SOCKET": path}).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = received(sock)
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_extend_timeout_is_in_microseconds(notify_socket: tuple[socket.socket, str]) -> None:
    """extend_timeout(seconds) sends EXTEND_TIMEOUT_USEC in microseconds."""
    sock, path = notify_socket
    SystemdNotifier({"NOTIFY_SOCKET": path}).extend_timeout(90.5)
    assert received(sock) == ["EXTEND_TIMEOUT_USEC=90500000"]


def test_abstract_socket_address() -> None:
    """A NOTIFY_SOCKET starting with '@' names an abstract socket."""
    name = f"syncd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == ["READY=1"]


def test_no_socket_means_no_op() -> None:
    """Without NOTIFY_SOCKET every call quietly does nothing."""
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.watchdog_interval() is None


def test_unusable_address_is_a_no_op() -> None:
    """A relative or foreign NOTIFY_SOCKET (e.g. vsock:) disables the notifier."""
    assert not SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    assert not SystemdNotifier({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_a_vanished_socket_does_not_raise() -> None:
    """Sending to a socket that is gone returns False instead of raising."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "/nonexistent/syncd/notify"})
    assert notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    """WATCHDOG_USEC=60 s gives a 30 s ping interval."""
    notifier = SystemdNotifier({"WATCHDOG_USEC": "60000000"})
    assert notifier.watchdog_interval() == 30.0


def test_watchdog_pid_must_be_ours() -> None:
    """WATCHDOG_PID naming another process means we must not ping."""
    env = {"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "4242"}
    assert SystemdNotifier(env, pid=4242).watchdog_interval() == 30.0
    assert SystemdNotifier(env, pid=4243).watchdog_interval() is None


@pytest.mark.parametrize("value", ["", "0", "-5", "soon"])
def test_watchdog_interval_ignores_bad_values(value: str) -> None:
    """Missing, zero, negative or non-numeric WATCHDOG_USEC means no watchdog."""
    assert SystemdNotifier({"WATCHDOG_USEC": value}).watchdog_interval() is None


def test_environment_defaults_to_os_environ(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no mapping given, NOTIFY_SOCKET is read from the process environment."""
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert SystemdNotifier().watchdog()
    assert received(sock) == ["WATCHDOG=1"]
