"""What every scenario shares: running `syncd` and measuring it, building folders, the
result rows, and the 100,000-file mirror that scenarios 3 and 5 both use.

Each figure is the wall time of a whole command (Python's start-up included), as a
user running it from a shell would see it. Peak RSS comes from ``wait4`` (the child's
own ``ru_maxrss``), so nothing polls the process while it runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from serverproc import REPO_ROOT, ServerProcess, clean_env

ROOT = REPO_ROOT

MIB = 1024 * 1024
KIB = 1024
TREE_FILE_BYTES = 16  # the big tree of scenarios 3 and 5: issue 15's 16-byte files,
TREE_PER_DIR = 100  # 100 to a directory


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    measure: str
    value: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    met: str = ""  # "yes", "NO", or "" when there is no target


@dataclass
class ScenarioResult:
    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # raw figures for the JSON file

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "title": self.title,
            "rows": [asdict(r) for r in self.rows],
            "notes": self.notes,
            "data": self.data,
        }


@dataclass
class Measured:
    """A finished command: wall seconds, exit code, peak RSS and its output files."""

    seconds: float
    returncode: int
    peak_rss: int
    stdout: str
    stderr: str

    def check(self, what: str) -> Measured:
        if self.returncode != 0:
            raise SystemExit(f"{what} failed ({self.returncode}):\n{self.stderr[-3000:]}")
        return self


def run_measured(argv: list[str], env: dict[str, str], workdir: Path, name: str) -> Measured:
    """Run ``argv`` to the end; wall time and peak RSS (``wait4``) of that process."""
    out_path, err_path = workdir / f"{name}.out", workdir / f"{name}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=REPO_ROOT
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        elapsed,
        proc.returncode,
        usage.ru_maxrss * KIB,
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
    )


def syncd_env(server: ServerProcess, **extra: str) -> dict[str, str]:
    return clean_env({"OPENAI_API_KEY": server.client_key, **extra})


def syncd_sync(
    server: ServerProcess,
    folder: Path,
    state: Path,
    workdir: Path,
    name: str,
    *args: str,
    env: dict[str, str] | None = None,
) -> Measured:
    """`syncd sync FOLDER --state STATE --base-url URL --json ARGS`, measured."""
    argv = [sys.executable, "-m", "syncd", "sync", str(folder), "--state", str(state)]
    argv += ["--base-url", server.base_url, "--json", *args]
    return run_measured(argv, syncd_env(server, **(env or {})), workdir, name)


def make_small_files(root: Path, count: int, size: int, per_dir: int = 1000) -> None:
    """``count`` files of ``size`` distinct random bytes, ``per_dir`` to a directory."""
    for i in range(count):
        directory = root / f"d{i // per_dir:03}"
        if i % per_dir == 0:
            directory.mkdir(parents=True, exist_ok=True)
        with open(directory / f"f{i:06}.bin", "wb") as out:
            out.write(i.to_bytes(8, "big") + os.urandom(size - 8))


def tree_size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


@dataclass
class Mirror:
    """A folder of many small files already mirrored: server store, ledger, timings."""

    folder: Path
    state: Path
    store: Path
    files: int
    build_seconds: float
    build_concurrency: int
    reused: bool = False  # built by an earlier run (--keep); build_seconds is that run's

    def server(self) -> ServerProcess:
        return ServerProcess(self.store, log_path=self.store.with_name("serve.log"))


class Workspace:
    """The run's scratch directory; builds the big mirror once for scenarios 3 and 5."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._mirrors: dict[int, Mirror] = {}

    def dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def fresh(self, name: str) -> Path:
        """An empty directory (whatever an earlier run with --keep left there goes)."""
        shutil.rmtree(self.root / name, ignore_errors=True)
        return self.dir(name)

    def mirrored_tree(self, files: int, concurrency: int = 32) -> Mirror:
        """``files`` files of ``TREE_FILE_BYTES`` in directories of ``TREE_PER_DIR`` (issue
        15's shape: 100,000 files in 1,000 directories), mirrored by `syncd sync` with
        ``concurrency`` workers (the quick way to build the ledger and the store)."""
        if files in self._mirrors:
            return self._mirrors[files]
        # The shape is in the name: a tree of another shape kept by --keep is not reused.
        base = self.dir(f"tree-{files}-{TREE_FILE_BYTES}b-{TREE_PER_DIR}")
        mirror = Mirror(base / "data", base / "state", base / "store", files, 0.0, concurrency)
        done = base / "built.json"  # a tree an earlier run (--keep) finished is reused
        if done.is_file():
            mirror.build_seconds = float(json.loads(done.read_text())["build_seconds"])
            mirror.reused = True
            self._mirrors[files] = mirror
            return mirror
        shutil.rmtree(base)
        base.mkdir()
        make_small_files(mirror.folder, files, TREE_FILE_BYTES, TREE_PER_DIR)
        with mirror.server() as server:
            built = syncd_sync(
                server,
                mirror.folder,
                mirror.state,
                base,
                "first-pass",
                "--concurrency",
                str(concurrency),
            ).check("first mirror of the tree")
        mirror.build_seconds = built.seconds
        done.write_text(json.dumps({"build_seconds": built.seconds}))
        self._mirrors[files] = mirror
        return mirror


def summary_of(measured: Measured) -> dict[str, Any]:
    """The JSON summary `syncd sync --json` printed."""
    try:
        data: dict[str, Any] = json.loads(measured.stdout)
    except ValueError:
        return {}
    return data
