"""Watcher trouble with real kernel limits: queue overflow, watch and instance exhaustion.

Each case runs a FolderWatcher in a child process so the kernel state can be bent
without touching the machine: the overflow is produced by freezing the child (SIGSTOP)
while another process generates more events than its inotify queue holds; the limits
are lowered inside a private user namespace (``/proc/sys/user/max_inotify_*``), which
affects nothing outside it.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

DEADLINE = 20.0

CHILD = textwrap.dedent(
    """
    import json, sys, threading
    from pathlib import Path
    from syncd.log import configure_logging
    configure_logging(fmt="json", stream=sys.stderr)
    folder, watches, instances = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    if watches != "-":
        Path("/proc/sys/user/max_inotify_watches").write_text(watches)
    if instances != "-":
        Path("/proc/sys/user/max_inotify_instances").write_text(instances)
    from syncd.local.watch.watcher import FolderWatcher

    lock = threading.Lock()  # callbacks come from several watcher threads

    def emit(**record):
        with lock:
            print(json.dumps(record), flush=True)

    watcher = FolderWatcher(
        folder, lambda hint: emit(hint=hint),
        on_trouble=lambda reason: emit(trouble=reason),
        on_root_gone=lambda: emit(gone=True),
    )
    watcher.start()
    emit(started=watcher.alive)
    sys.stdin.read()  # run until the test closes our stdin
    watcher.stop()
    """
)


class Child:
    """A watcher process whose JSON lines are read in the background."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"unreadable": line})

    def expect(self, key: str) -> dict[str, Any]:
        """The next record carrying ``key`` (others are skipped), within the deadline."""
        return self.until(key)[-1]

    def until(self, key: str) -> list[dict[str, Any]]:
        """Every record up to and including the first one carrying ``key``."""
        seen: list[dict[str, Any]] = []
        while True:
            try:
                record = self.lines.get(timeout=DEADLINE)
            except queue.Empty:
                self.close()
                pytest.fail(f"no {key!r} record after {seen}; stderr: {self.stderr()}")
            seen.append(record)
            if key in record:
                return seen

    def stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read() if self.process.poll() is not None else "(running)"

    def close(self) -> None:
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def child_in_user_namespace(folder: Path, watches: str, instances: str) -> Child:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare(1) is not installed")
    probe = subprocess.run(
        [unshare, "--user", "--map-root-user", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot create a user namespace here: {probe.stderr.decode().strip()}")
    argv = [unshare, "--user", "--map-root-user", sys.executable, "-c", CHILD]
    return Child([*argv, str(folder), watches, instances])


def test_queue_overflow_requests_a_rescan_and_names_the_sysctl(tmp_path: Path) -> None:
    """Events beyond the inotify queue are lost: on_trouble says so and names the sysctl."""
    child = Child([sys.executable, "-c", CHILD, str(tmp_path), "-", "-"])
    try:
        assert child.expect("started")["started"] is True
        queue_size = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
        os.kill(child.process.pid, signal.SIGSTOP)
        try:
            # Alternate two files so that no two consecutive events are identical
            # (the kernel merges those) and the frozen reader's queue must overflow.
            fd_a = os.open(tmp_path / "a.bin", os.O_WRONLY | os.O_CREAT)
            fd_b = os.open(tmp_path / "b.bin", os.O_WRONLY | os.O_CREAT)
            for _ in range(queue_size // 2 + 1000):
                os.write(fd_a, b"a")
                os.write(fd_b, b"b")
            os.close(fd_a)
            os.close(fd_b)
        finally:
            os.kill(child.process.pid, signal.SIGCONT)
        reason = child.expect("trouble")["trouble"]
        assert "overflow" in reason
        assert "fs.inotify.max_queued_events" in reason
        assert str(tmp_path) in reason
    finally:
        child.close()


def test_watch_limit_reached_is_reported_with_the_sysctl(tmp_path: Path) -> None:
    """More directories than max_user_watches: on_trouble names fs.inotify.max_user_watches."""
    for index in range(30):
        (tmp_path / f"d{index:02}").mkdir()
    child = child_in_user_namespace(tmp_path, watches="10", instances="-")
    try:
        reason = child.expect("trouble")["trouble"]
        assert "fs.inotify.max_user_watches" in reason
        assert str(tmp_path) in reason
    finally:
        child.close()


def test_instance_limit_reached_is_reported_with_the_sysctl(tmp_path: Path) -> None:
    """No inotify instance left: on_trouble names fs.inotify.max_user_instances."""
    child = child_in_user_namespace(tmp_path, watches="-", instances="0")
    try:
        reason = child.expect("trouble")["trouble"]
        assert "fs.inotify.max_user_instances" in reason
        assert child.expect("started")["started"] is False
    finally:
        child.close()


def test_enough_watches_means_no_trouble(tmp_path: Path) -> None:
    """With limits that fit the tree, the watcher starts quietly and hints as usual."""
    for index in range(5):
        (tmp_path / f"d{index}").mkdir()
    child = child_in_user_namespace(tmp_path, watches="100", instances="8")
    try:
        assert child.until("started") == [{"started": True}]
        (tmp_path / "d3" / "f.txt").write_text("x")
        assert child.until("hint") == [{"hint": "d3/f.txt"}]
    finally:
        child.close()
