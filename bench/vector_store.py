"""How long `syncd sync --vector-store` takes to get N small files attached and `completed`.

    python bench/vector_store.py [--files 1000] [--delay 2.0] [--workers 16]

For each indexing model -- ``syncd serve --index-delay 0`` (syncd's own cost: uploads,
one batch, polls) and ``--index-delay DELAY --index-workers WORKERS`` (DELAY seconds per
file, WORKERS files at a time) -- a fresh `syncd serve` on a free port and a fresh
folder of ``--files`` Markdown files of 1-2 KB: the real command
(``python -m syncd sync FOLDER --vector-store bench --json``) runs until every file is
``completed`` (it waits for indexing), then once more with nothing to do. Each row is
the wall time of the whole command, with the requests the server saw. The first row is
the peer in the same run: the same folder mirrored without a vector store (the Files
side alone), so that the store's own cost can be read off on a busy machine.

The default 2 s per file on 16 workers (8 files/s) is an assumption standing in for
OpenAI's indexing, whose speed is not documented: reports of batches of small files
range from seconds to minutes. ``floor`` is what that model alone allows
(``ceil(files / workers) * delay``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serverproc import REPO_ROOT, ServerProcess, clean_env

ROUTES = ("create", "vs_batch_create", "vs_batch_retrieve", "vs_batch_files", "vs_file_list")


def make_folder(root: Path, count: int) -> None:
    for i in range(count):
        path = root / f"dir{i % 10}" / f"note-{i:05}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Note {i}\n\n" + f"Line {i} of a small document.\n" * (40 + i % 30))


def timed_sync(
    server: ServerProcess, folder: Path, state: Path, *, store: bool = True
) -> tuple[float, dict]:
    argv = [
        sys.executable, "-m", "syncd", "sync", str(folder), "--state", str(state),
        "--base-url", server.base_url, "--json",
    ]  # fmt: skip
    if store:
        argv += ["--vector-store", "bench"]
    server.reset_stats()
    started = time.perf_counter()
    result = subprocess.run(
        argv,
        env=clean_env({"OPENAI_API_KEY": server.client_key}),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"sync failed ({result.returncode}):\n{result.stderr[-2000:]}")
    summary = json.loads(result.stdout)
    counts = server.stats()["counts"]
    summary["requests"] = {route: counts.get(route, 0) for route in ROUTES}
    summary["requests_total"] = sum(counts.values())
    return elapsed, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds to index one file")
    parser.add_argument("--workers", type=int, default=16, help="files indexed at once")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="syncd-bench-vs-") as tmp:
        base = Path(tmp)
        make_folder(base / "data", args.files)
        with ServerProcess(base / "store", log_path=base / "serve.log") as srv:
            elapsed, summary = timed_sync(srv, base / "data", base / "state", store=False)
            rows.append(("files only", None, 0, elapsed, summary))
    for delay, workers in ((0.0, args.workers), (args.delay, args.workers)):
        with tempfile.TemporaryDirectory(prefix="syncd-bench-vs-") as tmp:
            base = Path(tmp)
            make_folder(base / "data", args.files)
            extra = ["--index-delay", str(delay), "--index-workers", str(workers)]
            with ServerProcess(
                base / "store", log_path=base / "serve.log", extra_args=extra
            ) as srv:
                for label in ("first sync", "no-change sync"):
                    elapsed, summary = timed_sync(srv, base / "data", base / "state")
                    store = summary["vector_store"]
                    assert store["exact"] and store["completed"] == args.files, store
                    rows.append((label, delay, workers, elapsed, summary))
    print(
        f"syncd sync --vector-store against syncd serve (loopback), {args.files} files of "
        f"1-2 KB, {os.cpu_count()} CPUs"
    )
    header = f"{'run':<16}{'indexing':>16}{'floor s':>9}{'seconds':>9}{'pass s':>8}"
    print(header + "  uploads  batches  polls  requests")
    for label, delay, workers, elapsed, summary in rows:
        req = summary["requests"]
        model = "no store" if delay is None else f"{delay:g} s x {workers}" if delay else "instant"
        floor = math.ceil(args.files / workers) * (delay or 0) if label == "first sync" else 0.0
        polls = req["vs_batch_retrieve"] + req["vs_batch_files"]
        print(
            f"{label:<16}{model:>16}{floor:>9.1f}{elapsed:>9.2f}"
            f"{summary['duration_seconds']:>8.2f}  {req['create']:>7}  "
            f"{req['vs_batch_create']:>7}  {polls:>5}  {summary['requests_total']:>8}"
        )


if __name__ == "__main__":
    main()
