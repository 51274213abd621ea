"""The daemon's pure parts: the folder safety verdict, the status line, liveness, signals."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from syncd.daemon.folder_guard import folder_problem
from syncd.daemon.keepalive import Heartbeat
from syncd.daemon.signals import SignalRelay
from syncd.daemon.status import MirrorStatus, status_line
from syncd.remote.protocol import PacingStatus
from syncd.testing import FakeClock

FOLDER = "/srv/data"
HOME = (10, 100)  # (device, inode) recorded in the ledger


@pytest.mark.parametrize(
    ("identity", "recorded", "empty", "tracked", "expected"),
    [
        (HOME, HOME, False, 5, None),  # the same folder
        (HOME, HOME, True, 5, None),  # the user deleted every file: a real change
        (None, HOME, False, 5, "is gone"),  # renamed away or unmounted
        (None, None, False, 0, "is gone"),  # missing, even with nothing mirrored
        ((11, 100), HOME, False, 5, "on another filesystem"),  # another disk mounted
        ((11, 7), HOME, True, 5, "on another filesystem"),
        ((10, 200), HOME, True, 5, "is empty but 5 files"),  # a bare mount point
        ((10, 200), None, True, 5, "is empty but 5 files"),  # never recorded (sync only)
        ((10, 200), HOME, False, 5, None),  # replaced by a non-empty directory
        ((11, 7), HOME, True, 0, None),  # nothing mirrored: nothing to protect
        ((10, 200), None, False, 3, None),  # first daemon start after `syncd sync`
    ],
)
def test_folder_problem(
    identity: tuple[int, int] | None,
    recorded: tuple[int, int] | None,
    empty: bool,
    tracked: int,
    expected: str | None,
) -> None:
    """Gone, on another device, or newly empty with files mirrored: pause; else go on."""
    problem = folder_problem(FOLDER, identity, recorded, empty=empty, tracked=tracked)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem and FOLDER in problem
        assert "nothing deleted" in problem


def test_status_line_counts() -> None:
    """One mirror: mirrored, pending and failed counts, singular and plural."""
    assert status_line([MirrorStatus("/a", 1, 0, 0)]) == "mirrored 1 file, 0 pending, 0 failed"
    assert status_line([MirrorStatus("/a", 3, 2, 1)]) == "mirrored 3 files, 2 pending, 1 failed"


def test_status_line_sums_mirrors_and_shows_retry_backoff() -> None:
    """Several mirrors are summed; retryable failures show when the next retry is due."""
    line = status_line(
        [
            MirrorStatus("/a", 3, 2, 0, retrying=2, next_retry_in=59.6),
            MirrorStatus("/b", 4, 0, 1, retrying=1, next_retry_in=300),
        ]
    )
    assert line == "mirrored 7 files in 2 folders, 2 pending, 1 failed (3 retrying, next in 60 s)"


def test_status_line_puts_pauses_and_refusals_first() -> None:
    """A key pause, a folder pause and a refused delete lead the line."""
    line = status_line(
        [MirrorStatus("/a", 3, 0, 0, paused="folder /a is gone", refusal="refusing to delete")],
        paused="API key rejected (401)",
    )
    assert line == (
        "paused: API key rejected (401); paused: folder /a is gone; refusing to delete; "
        "mirrored 3 files, 0 pending, 0 failed"
    )


def test_heartbeat_busy_loop_without_progress_is_unhealthy() -> None:
    """Busy and silent past the stall limit: unhealthy; idle or progressing: healthy."""
    clock = FakeClock()
    heartbeat = Heartbeat(clock)
    clock.now += 50
    assert not heartbeat.healthy(stall_limit=30)
    heartbeat.beat()
    assert heartbeat.healthy(stall_limit=30)
    heartbeat.set_idle(True)
    clock.now += 10_000
    assert heartbeat.healthy(stall_limit=30)  # waiting for work is not being stuck
    heartbeat.set_idle(False)
    clock.now += 31
    assert not heartbeat.healthy(stall_limit=30)


def test_signal_relay_runs_reload_on_its_own_thread() -> None:
    """SIGHUP reaches on_reload on the relay thread; handlers are restored afterwards."""
    before = signal.getsignal(signal.SIGHUP)
    called = threading.Event()
    threads: list[str] = []

    def on_reload() -> None:
        threads.append(threading.current_thread().name)
        called.set()

    with SignalRelay(on_stop=lambda signum: None, on_reload=on_reload):
        os.kill(os.getpid(), signal.SIGHUP)
        assert called.wait(10)
    assert threads == ["syncd-signals"]
    assert signal.getsignal(signal.SIGHUP) == before


def test_signal_relay_first_stop_signal_calls_on_stop() -> None:
    """The first SIGTERM calls on_stop with its number (a second would exit at once)."""
    stopped: list[int] = []
    done = threading.Event()

    def on_stop(signum: int) -> None:
        stopped.append(signum)
        done.set()

    with SignalRelay(on_stop=on_stop, on_reload=lambda: None, keep_after_stop=False):
        os.kill(os.getpid(), signal.SIGTERM)
        assert done.wait(10)
    assert stopped == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_status_line_says_when_uploads_are_paced() -> None:
    """A route holding requests back is named with its rate and where it comes from;
    one that is not pacing now is left out."""
    paced = PacingStatus("create", 10.0, "server limit", waiting=3, paced_since=1.0)
    idle = PacingStatus("list", 2.0, "server limit")
    line = status_line([MirrorStatus("/a", 3, 2, 0)], pacing=[paced, idle])
    assert line == "mirrored 3 files, 2 pending, 0 failed; uploads paced at 600/min (server limit)"
