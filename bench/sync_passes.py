"""How long `syncd sync` passes take against `syncd serve` on loopback.

    python bench/sync_passes.py [--first 1000] [--nochange 10000] [--concurrency 8]

Starts `syncd serve` on a free port (store in a temporary directory), then runs the
real command (`python -m syncd sync ... --json`, key in the environment) and times:

- the first pass over ``--first`` small files (1-2 KB each, in 10 directories);
- a second, no-change pass over the same folder;
- a first pass over ``--nochange`` files (setup for the next row);
- a no-change pass over those files: the figure for "nothing to do", which includes
  Python's start-up, the walk, one remote listing and the ledger reads.

Each row is the wall time of the whole command; the server's request counts for the
no-change passes show that they sent no create or delete.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serverproc import REPO_ROOT, ServerProcess, clean_env


def make_folder(root: Path, count: int) -> int:
    """``count`` small files of distinct content in 10 directories; returns total bytes."""
    total = 0
    for i in range(count):
        path = root / f"dir{i % 10}" / f"file-{i:05}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        content = (f"file {i}\n" * (100 + i % 100)).encode()
        path.write_bytes(content)
        total += len(content)
    return total


def timed_sync(
    server: ServerProcess, folder: Path, state: Path, concurrency: int
) -> tuple[float, dict]:
    argv = [
        sys.executable, "-m", "syncd", "sync", str(folder), "--state", str(state),
        "--base-url", server.base_url, "--json", "--concurrency", str(concurrency),
    ]  # fmt: skip
    env = clean_env({"OPENAI_API_KEY": server.client_key})
    server.reset_stats()
    started = time.perf_counter()
    result = subprocess.run(
        argv, env=env, capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"sync failed ({result.returncode}):\n{result.stderr[-2000:]}")
    summary = json.loads(result.stdout)
    counts = server.stats()["counts"]
    summary["requests"] = {k: counts.get(k, 0) for k in ("create", "delete", "list")}
    return elapsed, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=1000, help="files in the first-pass test")
    parser.add_argument("--nochange", type=int, default=10000, help="files in the no-change test")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    rows: list[tuple[str, int, float, dict]] = []
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        base = Path(tmp)
        with ServerProcess(base / "store", log_path=base / "serve.log") as server:
            small = base / "small"
            make_folder(small, args.first)
            for label in ("first pass", "no-change pass"):
                elapsed, summary = timed_sync(server, small, base / "state", args.concurrency)
                rows.append((label, args.first, elapsed, summary))
            big = base / "big"
            make_folder(big, args.nochange)
            for label in ("first pass", "no-change pass"):
                elapsed, summary = timed_sync(server, big, base / "state", args.concurrency)
                rows.append((label, args.nochange, elapsed, summary))
    print(
        f"syncd sync against syncd serve (loopback), concurrency {args.concurrency}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'pass':<16}{'files':>8}{'seconds':>10}{'files/s':>10}  creates  deletes  lists")
    for label, files, elapsed, summary in rows:
        req = summary["requests"]
        print(
            f"{label:<16}{files:>8}{elapsed:>10.2f}{files / elapsed:>10.0f}"
            f"  {req['create']:>7}  {req['delete']:>7}  {req['list']:>5}"
        )


if __name__ == "__main__":
    main()
