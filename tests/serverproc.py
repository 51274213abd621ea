"""A real `syncd serve` in a child process, for tests and benchmarks.

    with ServerProcess(tmp_path / "store", api_key="k", faults={"error_rate": 0.5}) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=srv.client_key)
        ...
        assert srv.stats()["counts"]["create"] == 3

The server is started as ``python -m syncd serve --port 0`` and its URL read from the
ready line it prints. The key and faults go through the environment, never argv. Its
log (stderr) goes to ``log_path``; a failed start raises with the log's tail.

The server is as strict as the real API: most purposes cannot be downloaded. Test
oracles read what the server stored with ``stored_content(file_id)`` (straight from the
store's ``blobs/``), never over the API; ``allow_all_downloads=True`` starts it with
``--allow-all-downloads`` for tests that need real downloads. ``preexec_fn`` runs in the
child before exec (e.g. to set a resource limit).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

READY_PATTERN = re.compile(rb"syncd serve: listening on (http://\S+/v1) \(store: ")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
SCRUBBED_ENV_PREFIXES = ("OPENAI_", "AZURE_", "SYNCD_")
REPO_ROOT = Path(__file__).resolve().parents[1]


class ServerStartError(RuntimeError):
    """The server process did not print its ready line in time."""


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ without OPENAI_*/AZURE_*/SYNCD_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(extra or {})
    return env


class ServerProcess:
    """One `syncd serve` child process over ``data_dir`` (see the module docstring).

    ``api_key=None`` starts a server that accepts any key; ``client_key`` is then a
    dummy key that clients must still send.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        api_key: str | None = None,
        faults: dict[str, Any] | None = None,
        max_bytes: int | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        extra_args: Sequence[str] = (),
        allow_all_downloads: bool = False,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.api_key = api_key
        self.faults = faults
        self.max_bytes = max_bytes
        self.allow_all_downloads = allow_all_downloads
        self.preexec_fn = preexec_fn
        self.host = host
        self.port = port
        self.log_path = log_path or self.data_dir.with_name(self.data_dir.name + ".serve.log")
        self.extra_args = list(extra_args)
        self.base_url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    # --- life cycle -------------------------------------------------------------------

    @property
    def client_key(self) -> str:
        """The key a client should send: the demanded one, or any dummy."""
        return self.api_key or "sk-test-any-key"

    @property
    def root_url(self) -> str:
        """The server's origin, without ``/v1``."""
        return self.base_url.removesuffix("/v1")

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "syncd", "--log-format", "json", "serve"]
        argv += ["--host", self.host, "--port", str(self.port), "--data", str(self.data_dir)]
        if self.max_bytes is not None:
            argv += ["--max-bytes", str(self.max_bytes)]
        if self.allow_all_downloads:
            argv.append("--allow-all-downloads")
        return argv + self.extra_args

    def start(self) -> ServerProcess:
        """Start the process and wait (with a deadline) for its ready line."""
        assert self.proc is None, "already started"
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)  # the server makes its store
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        extra: dict[str, str] = {}
        if self.api_key is not None:
            extra["SYNCD_SERVE_API_KEY"] = self.api_key
        if self.faults:
            extra["SYNCD_SERVE_FAULTS"] = json.dumps(self.faults)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=clean_env(extra),
                preexec_fn=self.preexec_fn,
            )
        try:
            self.base_url = self._wait_ready()
        except BaseException:
            self._terminate(kill=True)
            raise
        self.port = int(self.base_url.rsplit(":", 1)[1].split("/", 1)[0])
        return self

    def _wait_ready(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ServerStartError(
                        f"syncd serve not ready in time; log:\n{self.log_tail()}"
                    )
                if not selector.select(timeout=remaining):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self.proc.wait(timeout=STOP_TIMEOUT)
                    raise ServerStartError(
                        f"syncd serve exited with {self.proc.returncode}; log:\n{self.log_tail()}"
                    )
                buffer += chunk
        match = READY_PATTERN.search(buffer)
        if match is None:
            raise ServerStartError(f"unexpected first line from syncd serve: {buffer!r}")
        return match.group(1).decode()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _terminate(self, *, kill: bool) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()

    def stop(self) -> None:
        """Graceful stop (SIGTERM), waiting for the process to exit; idempotent."""
        self._terminate(kill=False)

    def kill(self) -> None:
        """Abrupt stop (SIGKILL), as in a crash."""
        self._terminate(kill=True)

    def restart(self, *, kill: bool = False) -> ServerProcess:
        """Stop, then start again over the same store, on the same port if still free."""
        self._terminate(kill=kill)
        try:
            return self.start()
        except ServerStartError:
            self.port = 0  # the old port was taken meanwhile
            return self.start()

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- test controls ----------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.client_key}"}

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        with httpx.Client(timeout=30.0) as http:
            response = http.request(
                method, f"{self.root_url}/_syncd/{path}", headers=self.headers(), json=body
            )
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        """``{"requests": [{method, path, route, status, started, finished, fault}],
        "counts": {route: n}, "total", "in_flight", "max_in_flight"}``."""
        result: dict[str, Any] = self._admin("GET", "stats")
        return result

    def reset_stats(self) -> None:
        self._admin("POST", "stats/reset")

    def set_faults(self, faults: dict[str, Any] | None) -> dict[str, Any]:
        """Replace the fault configuration (None or {} turns faults off)."""
        result: dict[str, Any] = self._admin("PUT", "faults", faults or {})
        return result

    def get_faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._admin("GET", "faults")
        return result

    def _proc_status(self, field: str) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
        assert match is not None, f"{field} not in /proc/{self.pid}/status"
        return int(match.group(1)) * 1024

    def rss_bytes(self) -> int:
        """The server's resident memory now."""
        return self._proc_status("VmRSS")

    def peak_rss_bytes(self) -> int:
        """The server's peak resident memory so far (VmHWM)."""
        return self._proc_status("VmHWM")

    def blob_paths(self) -> list[Path]:
        """The content files in the store (one per live file)."""
        with contextlib.suppress(FileNotFoundError):
            return sorted((self.data_dir / "blobs").iterdir())
        return []

    def stored_content(self, file_id: str) -> bytes:
        """What the server stored for ``file_id``, read from its store, not over the API
        (which refuses most purposes); FileNotFoundError if it holds no such file."""
        if not file_id or "/" in file_id or file_id.startswith("."):
            raise FileNotFoundError(file_id)
        return (self.data_dir / "blobs" / file_id).read_bytes()

    def open_fds(self) -> int:
        """How many file descriptors the server process holds now."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))
