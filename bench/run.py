"""Every benchmark scenario against `syncd serve` on loopback, in one command.

    python bench/run.py                 # everything, full sizes (about half an hour)
    python bench/run.py --quick         # every scenario at small sizes (a few minutes)
    python bench/run.py --only 1,4      # a subset (numbers below)
    python bench/run.py --files 20000   # scenarios 3 and 5 on another tree size

Scenarios (targets from issues 7 and 15):

1. 300 and 3,000 files of 4 KiB, 30 ms latency per request: syncd at its defaults vs the
   official SDK in a sequential loop and in ThreadPoolExecutor(8) (>= 10x sequential,
   >= 1.5x threaded).
2. One 1 GiB file (purpose assistants, so it goes through the Uploads API in 64 MiB
   parts): syncd's throughput vs `curl -F` to POST /files (>= 0.6x); peak RSS (<= 80 MiB).
3. 100,000 files of 16 bytes, 100 to a directory: a pass with no changes vs
   `rsync -a --dry-run` and `rclone sync --dry-run` against a copy, in the same run
   (<= 1.0 s and <= rclone; at 20,000 files <= 1.5x rsync); peak RSS (<= 100 MiB);
   ledger size on disk. The first mirror is built with 32 workers; its time is shown.
4. Close-to-visible latency with debounce 0.3 s, p50/p99 over 200 files (bench/latency.py).
5. CPU of the idle daemon over 60 s with 100,000 files watched (<= 0.5 %), and its start
   to READY (<= 2 s).
6. A first mirror of 2,000 small files under `syncd serve --rate-limit 600/min` with
   100 ms latency: paced (headers, --max-uploads-per-minute) within 5 % of the ideal
   200 s with <= 1 % of uploads answered 429, and unpaced for comparison (issue 13;
   alone: bench/pacing.py). Not in the default set: it takes ten minutes.

Every syncd command is timed whole, start-up included, with the package's bytecode
compiled first, as an installed package has it (``pip install`` compiles it; an editable
install under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile syncd's sources at every
start, about 0.3 s here).

Prints the table and writes it to bench/results/latest.md and latest.json, with a plot
of scenario 1 in bench/results/scenario1.png (needs matplotlib; skipped with a message
when it is missing: `pip install matplotlib`). Scratch files go to a temporary
directory (``--keep DIR`` keeps them).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenarios import idle_cpu, large_file, latency_close, no_change, pacing, small_files
from scenarios.common import ROOT, ScenarioResult, Workspace
from scenarios.report import markdown_table, plot_scenario1, print_table

RESULTS = ROOT / "bench" / "results"


def sizes(args: argparse.Namespace) -> dict[str, object]:
    quick = args.quick
    return {
        "small": [100, 300] if quick else [300, 3000],
        "large_mib": 128 if quick else 1024,
        "tree": args.files or (10_000 if quick else 100_000),
        "latency_files": 30 if quick else 200,
        "idle_seconds": 15.0 if quick else 60.0,
        "paced": 200 if quick else 2000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--only", default="1,2,3,4,5", help="scenario numbers, e.g. 1,3")
    parser.add_argument("--files", type=int, default=0, help="tree size for scenarios 3, 5")
    parser.add_argument("--keep", type=Path, help="keep scratch files in this directory")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args()
    compileall.compile_dir(ROOT / "syncd", quiet=1)  # see the module docstring
    chosen = {int(n) for n in args.only.split(",") if n.strip()}
    size = sizes(args)
    root = args.keep or Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    ws = Workspace(root)
    results: list[ScenarioResult] = []
    started = time.time()
    load_before = os.getloadavg()[2]  # other work on the machine skews every figure
    try:
        for number, label, call in (
            (1, "many small files", lambda: small_files.run(ws, size["small"])),
            (2, "one large file", lambda: large_file.run(ws, size["large_mib"])),
            (3, "no-change pass", lambda: no_change.run(ws, size["tree"])),
            (4, "close-to-visible latency", lambda: latency_close.run(ws, size["latency_files"])),
            (5, "idle daemon CPU", lambda: idle_cpu.run(ws, size["tree"], size["idle_seconds"])),
            (
                6,
                "first mirror under a rate limit",
                lambda: pacing.run(ws, size["paced_files"], args.quick),
            ),
        ):
            if number not in chosen:
                continue
            print(f"bench: scenario {number} ({label})...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            result = call()  # type: ignore[no-untyped-call]
            result.data["scenario_seconds"] = round(time.monotonic() - t0, 1)
            results.append(result)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    load = os.getloadavg()[2]
    machine = (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"load average {load_before:.1f} before / {load:.1f} after (15 min)"
    )
    print_table(results, machine)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python bench/run.py " + " ".join(sys.argv[1:])
    (args.out / "latest.md").write_text(markdown_table(results, machine, command.strip()))
    payload = {
        "command": command.strip(),
        "machine": machine,
        "started": started,
        "quick": args.quick,
        "scenarios": [r.to_json() for r in results],
    }
    (args.out / "latest.json").write_text(json.dumps(payload, indent=2) + "\n")
    scenario1 = next((r for r in results if r.number == 1), None)
    if scenario1 is not None:
        message = plot_scenario1(scenario1, args.out / "scenario1.png")
        print(f"bench: {message}", file=sys.stderr)
    print(f"bench: results in {args.out}/latest.md and latest.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
