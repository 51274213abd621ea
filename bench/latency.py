"""Close-to-visible latency of `syncd run`: how long a small file takes to appear remotely.

    python bench/latency.py [--debounce 1.0 0.3] [--files 50] [--size 200]

For each debounce: starts `syncd serve` and `syncd run FOLDER --debounce D` on loopback
(fresh temporary directories), waits for the daemon's first reconcile, then drops small
files one at a time. For each, the latency is the server's finish time of the create
request (from its request statistics) minus the moment the file was closed; the next
file is written only once the previous one is listed, after a short random pause so
that writes do not fall in step with the daemon's timers. Prints p50/p99/max per
debounce next to the target (debounce + 0.3 s).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]
from serverproc import ServerProcess  # noqa: E402
from test_run_support import DaemonProcess, remote_names, wait_for  # noqa: E402

TARGET_MARGIN = 0.3


def finished_create_after(server: ServerProcess, closed_at: float) -> float | None:
    """The finish time of the first successful create that started after ``closed_at``."""
    for record in server.stats()["requests"]:
        if (
            record["route"] == "create"
            and record["status"] == 200
            and record["finished"] is not None
            and record["started"] >= closed_at
        ):
            return float(record["finished"])
    return None


def measure(debounce: float, files: int, size: int, workdir: Path) -> list[float]:
    """Latencies (seconds) of ``files`` small files for one debounce."""
    folder = workdir / "data"
    folder.mkdir()
    with ServerProcess(workdir / "store") as server:
        daemon = DaemonProcess(
            server, folder, workdir / "state", debounce=debounce, rescan_interval=3600
        )
        with daemon.start_ready():
            latencies = []
            for n in range(files):
                name = f"file-{n:04}.txt"
                server.reset_stats()
                with open(folder / name, "wb") as out:
                    out.write(random.randbytes(size))
                closed_at = time.time()
                finished = wait_for(
                    lambda closed_at=closed_at: finished_create_after(server, closed_at),
                    what=f"{name} uploaded",
                )
                wait_for(lambda name=name: name in remote_names(server), what=f"{name} listed")
                latencies.append(finished - closed_at)
                time.sleep(random.uniform(0.05, 0.25))  # de-phase from the daemon's timers
            assert daemon.stop() == 0
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--debounce", type=float, nargs="+", default=[1.0, 0.3])
    parser.add_argument("--files", type=int, default=50, help="files per debounce")
    parser.add_argument("--size", type=int, default=200, help="bytes per file")
    args = parser.parse_args()
    rows = []
    for debounce in args.debounce:
        with tempfile.TemporaryDirectory(prefix="syncd-latency-") as tmp:
            latencies = measure(debounce, args.files, args.size, Path(tmp))
        rows.append(
            (
                debounce,
                len(latencies),
                statistics.median(latencies),
                percentile(latencies, 0.99),
                max(latencies),
                debounce + TARGET_MARGIN,
            )
        )
    print(f"{'debounce':>8}  {'files':>5}  {'p50':>7}  {'p99':>7}  {'max':>7}  {'target':>7}  ok")
    for debounce, count, p50, p99, worst, target in rows:
        ok = "yes" if worst <= target else "NO"
        print(
            f"{debounce:>7.2f}s  {count:>5}  {p50:>6.3f}s  {p99:>6.3f}s  {worst:>6.3f}s"
            f"  {target:>6.2f}s  {ok}"
        )
    return 0 if all(row[4] <= row[5] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
