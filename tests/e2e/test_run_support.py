"""Helpers for the end-to-end tests of `syncd run` (no tests here).

    with DaemonProcess(server, folder, tmp_path / "state") as daemon:
        daemon.wait_event("ready")
        (folder / "a.txt").write_text("hello")
        wait_for(lambda: remote_contents(server) == {"a.txt": b"hello"})

The daemon is the real command, ``python -m syncd --log-format json run FOLDER ...``,
with the key in ``OPENAI_API_KEY`` (never argv) unless the test gives its own
environment. Its log (JSON lines on stderr) goes to a file the helpers read.
Every wait polls with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from serverproc import REPO_ROOT, ServerProcess, clean_env

DEADLINE = 30.0  # generous for a loaded 2-core machine; never reached when it works
POLL = 0.05
T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], *, deadline: float = DEADLINE, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``deadline``."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(POLL)


def list_remote(server: ServerProcess) -> list[dict[str, Any]]:
    """Every live remote file as the server lists it."""
    with httpx.Client(base_url=server.base_url + "/", headers=server.headers(), timeout=30) as h:
        response = h.get("files", params={"limit": 10000})
        response.raise_for_status()
        files: list[dict[str, Any]] = response.json()["data"]
        return files


def remote_names(server: ServerProcess) -> list[str]:
    """The remote filenames, sorted, duplicates kept (so a duplicate shows)."""
    return sorted(item["filename"] for item in list_remote(server))


def remote_contents(server: ServerProcess) -> dict[str, bytes]:
    """filename -> content of every remote file; fails on a duplicate filename."""
    out: dict[str, bytes] = {}
    for item in list_remote(server):
        assert item["filename"] not in out, f"duplicate remote file {item['filename']!r}"
        out[item["filename"]] = server.stored_content(item["id"])  # the API refuses user_data
    return out


def local_contents(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def write_counts(server: ServerProcess) -> dict[str, int]:
    """How many create and delete requests the server has seen so far."""
    counts = server.stats()["counts"]
    return {"create": counts.get("create", 0), "delete": counts.get("delete", 0)}


def write(root: Path, rel: str, content: bytes | str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


class DaemonProcess:
    """One `syncd run` child process (see the module docstring)."""

    def __init__(
        self,
        server: ServerProcess | None,
        folder: Path | None,
        state: Path,
        *args: str,
        env: dict[str, str] | None = None,
        debounce: float = 0.2,
        rescan_interval: float = 300.0,
        log_path: Path | None = None,
    ) -> None:
        self.server = server
        self.folder = folder
        self.state = state
        self.args = list(args)
        self.env = dict(env or {})
        if server is not None and "OPENAI_API_KEY_FILE" not in self.env:
            self.env.setdefault("OPENAI_API_KEY", server.client_key)
        self.debounce = debounce
        self.rescan_interval = rescan_interval
        self.log_path = log_path or state.with_name(state.name + ".run.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "syncd", "--log-format", "json", "run"]
        if self.folder is not None:
            argv.append(str(self.folder))
        argv += ["--state", str(self.state), "--debounce", str(self.debounce)]
        argv += ["--rescan-interval", str(self.rescan_interval)]
        if self.server is not None:
            argv += ["--base-url", self.server.base_url]
        return argv + self.args

    def start(self) -> DaemonProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=clean_env(self.env),
                cwd=REPO_ROOT,
            )
        return self

    def start_ready(self) -> DaemonProcess:
        """Start and wait for the first reconcile to end (the ``ready`` log line)."""
        self.start()
        self.wait_event("ready")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # --- the log ----------------------------------------------------------------------

    def log_text(self) -> str:
        """This run's log (earlier runs into the same file left out)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                return log.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines of this run (those named ``name``)."""
        out = []
        for line in self.log_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and (name is None or entry.get("event") == name):
                out.append(entry)
        return out

    def wait_event(
        self, name: str, predicate: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> dict[str, Any]:
        """Wait for a log line named ``name`` (matching ``predicate``); fail if the
        process exits first."""

        def found() -> dict[str, Any] | None:
            for entry in self.events(name):
                if predicate(entry):
                    return entry
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"syncd run exited with {self.proc.returncode} before {name!r}:\n"
                    + self.log_text()[-3000:]
                )
            return None

        try:
            return wait_for(found, what=f"log event {name!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlog tail:\n{self.log_text()[-3000:]}") from None

    # --- stopping ---------------------------------------------------------------------

    def send(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = DEADLINE) -> int:
        """Send ``signum`` and wait for the exit; returns the exit code."""
        proc = self.proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signum)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"syncd run did not exit:\n{self.log_text()[-3000:]}") from None

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def run_command(*args: str | Path, env: dict[str, str] | None = None) -> Sequence[Any]:
    """Run ``python -m syncd ARGS`` to completion: (exit code, stdout, stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "syncd", *map(str, args)],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


@contextlib.contextmanager
def open_notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET (short path under /tmp)."""
    directory = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(directory)


class Messages:
    """Every sd_notify datagram received so far, as lists of KEY=value lines."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received: list[list[str]] = []

    def wait_for(self, predicate: Callable[[list[str]], bool], what: str) -> list[str]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for message in self.received:
                if predicate(message):
                    return message
            try:
                self.received.append(self.sock.recv(4096).decode().split("\n"))
            except TimeoutError:
                continue
        raise AssertionError(f"no {what} in {self.received[-20:]}")
