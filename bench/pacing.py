"""Scenario 6 alone: a first mirror under `syncd serve --rate-limit 600/min`, paced and not.

    python bench/pacing.py            # 2,000 files (about ten minutes: 2 x 200 s + unpaced)
    python bench/pacing.py --quick    # 200 files, --rate-limit 10/s (about a minute)
    python bench/pacing.py --files N

Prints the table and writes it to bench/results/pacing.md and pacing.json (the other
scenarios' latest.md is left alone). What is measured: ``bench/scenarios/pacing.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenarios import pacing
from scenarios.common import ROOT, Workspace
from scenarios.report import markdown_table, print_table

RESULTS = ROOT / "bench" / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 files instead of 2,000")
    parser.add_argument("--files", type=int, default=0, help="how many files")
    parser.add_argument("--keep", type=Path, help="keep scratch files in this directory")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args()
    files = args.files or (200 if args.quick else 2000)
    root = args.keep or Path(tempfile.mkdtemp(prefix="syncd-bench-pacing-"))
    root.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = time.time()
    try:
        result = pacing.run(Workspace(root), files, quick=args.quick)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    load = os.getloadavg()
    machine = (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f}/{load_before[2]:.1f} "
        f"before / {load[0]:.1f}/{load[2]:.1f} after (1/15 min)"
    )
    print_table([result], machine)
    command = ("python bench/pacing.py " + " ".join(sys.argv[1:])).strip()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pacing.md").write_text(markdown_table([result], machine, command))
    payload = {"command": command, "machine": machine, "started": started, **result.to_json()}
    (args.out / "pacing.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"bench: results in {args.out}/pacing.md and pacing.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
