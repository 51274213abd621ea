"""Helpers for end-to-end tests of `syncd sync` / `syncd status`: run the real command
against a `syncd serve` process and look at the remote side (listed over plain HTTP,
contents read from the server's store).

    result = run_syncd(server, "sync", folder, "--state", state)
    assert result.returncode == 0
    assert remote_files(server) == {"a.txt": b"hello"}
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from serverproc import REPO_ROOT, ServerProcess, clean_env

COMMAND_TIMEOUT = 120.0
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_file_permission_override() -> None:
    """In the child, before exec: drop root's power to ignore file modes.

    Removing CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set makes the
    exec'd root process obey owner permission bits, so ``chmod 000`` really denies it
    (tests run as root, where chmod alone denies nothing).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run_syncd(
    server: ServerProcess | None,
    *args: str | Path,
    env: dict[str, str] | None = None,
    remote: bool = True,
    obey_file_modes: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m syncd ARGS`` (plus ``--base-url`` of ``server`` when ``remote``).

    The key goes through OPENAI_API_KEY, never argv. ``obey_file_modes`` runs the
    command without root's permission override, so unreadable files are unreadable.
    """
    argv = [sys.executable, "-m", "syncd", *map(str, args)]
    extra = dict(env or {})
    if server is not None:
        extra.setdefault("OPENAI_API_KEY", server.client_key)
        if remote:
            argv += ["--base-url", server.base_url]
    return subprocess.run(
        argv,
        env=clean_env(extra),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        cwd=REPO_ROOT,
        preexec_fn=_drop_file_permission_override if obey_file_modes else None,
        check=False,
    )


@dataclass(frozen=True)
class Measured:
    """A finished command, with how long it ran and its peak memory (max RSS)."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mib: float


def run_measured(
    *args: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = COMMAND_TIMEOUT,
    obey_file_modes: bool = False,
) -> Measured:
    """Run ``python -m syncd ARGS`` (nothing added: pass ``--base-url`` and the key
    yourself) and measure it: wall time, and the child's own max RSS from ``wait4``.
    Killed, and the test failed, if it outlives ``timeout``."""
    argv = [sys.executable, "-m", "syncd", *map(str, args)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=REPO_ROOT,
            preexec_fn=_drop_file_permission_override if obey_file_modes else None,
        )
        while True:  # poll with a deadline; wait4 gives this child's own rusage
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > timeout:
                os.kill(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise AssertionError(f"syncd {' '.join(map(str, args))} ran over {timeout} s")
            time.sleep(0.02)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Measured(
            proc.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            seconds,
            usage.ru_maxrss / 1024,  # KiB on Linux
        )


def peak_rss_mib(pid: int) -> float:
    """The peak memory (VmHWM) of a running process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def sync_json(server: ServerProcess, folder: Path, state: Path, *args: str) -> dict[str, Any]:
    """Run `syncd sync --json` and return its summary (whatever the exit code)."""
    result = run_syncd(server, "sync", folder, "--state", state, "--json", *args)
    assert result.stdout.strip(), f"no JSON on stdout; stderr:\n{result.stderr}"
    data: dict[str, Any] = json.loads(result.stdout)
    data["_exit"] = result.returncode
    data["_stderr"] = result.stderr
    return data


def list_remote(server: ServerProcess) -> list[dict[str, Any]]:
    """Every remote file as the server lists it (all purposes)."""
    with httpx.Client(base_url=server.base_url + "/", headers=server.headers(), timeout=30) as h:
        response = h.get("files", params={"limit": 10000})
        response.raise_for_status()
        files: list[dict[str, Any]] = response.json()["data"]
        return files


def remote_files(server: ServerProcess) -> dict[str, bytes]:
    """filename -> content for every remote file; fails on duplicate filenames.

    The listing comes over HTTP, the contents from the server's store: the real API
    refuses to download most purposes, so no oracle may depend on downloads.
    """
    out: dict[str, bytes] = {}
    for item in list_remote(server):
        name = item["filename"]
        assert name not in out, f"duplicate remote file {name!r}"
        out[name] = server.stored_content(item["id"])
    return out


def local_files(folder: Path) -> dict[str, bytes]:
    """relative path -> content for every regular file below ``folder``."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def upload_directly(
    server: ServerProcess, filename: str, content: bytes, purpose: str = "user_data"
) -> str:
    """Put a file on the server without syncd (a 'foreign' file); returns its id."""
    with httpx.Client(base_url=server.base_url + "/", headers=server.headers(), timeout=30) as h:
        response = h.post("files", data={"purpose": purpose}, files={"file": (filename, content)})
        response.raise_for_status()
        file_id: str = response.json()["id"]
        return file_id


def write(root: Path, rel: str, content: bytes | str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def write_counts(server: ServerProcess) -> dict[str, int]:
    """How many create and delete requests the server has seen."""
    counts = server.stats()["counts"]
    return {"create": counts.get("create", 0), "delete": counts.get("delete", 0)}
