"""Scenario 1: many 4 KiB files with 30 ms of latency added to every request.

syncd (`syncd sync` at its defaults: adaptive concurrency, 4 to 64 from 8) against the
official SDK in a sequential loop and in a ``ThreadPoolExecutor(8)`` (``sdk_loop.py``).
Each tool gets a fresh `syncd serve` (so no one lists another's files) with
``latency_ms`` faults on, and the same folder. Times are whole commands, interpreter
start-up and imports included.
Targets (issue 15): syncd at least 10x the sequential loop and 1.5x the threaded SDK.

At a fixed 8 in flight with 30 ms added to each request, syncd could not upload faster
than 8 files per 30 ms, about what the threaded SDK does; the adaptive limit raises the
number in flight while answers stay fast. The last rows show syncd with a fixed 16 in
flight, for comparison.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scenarios.common import (
    KIB,
    ROOT,
    Measured,
    Row,
    ScenarioResult,
    ServerProcess,
    Workspace,
    make_small_files,
    run_measured,
    syncd_env,
    syncd_sync,
)

LATENCY_MS = 30
FILE_BYTES = 4 * KIB
TOOLS = ("sdk sequential", "sdk threads(8)", "syncd", "syncd --concurrency 16")


def _run_tool(tool: str, folder: Path, work: Path, tag: str) -> Measured:
    store = work / f"store-{tag}"
    with ServerProcess(store, faults={"latency_ms": LATENCY_MS}) as server:
        if tool.startswith("syncd"):
            args = tool.split()[1:]
            measured = syncd_sync(server, folder, work / f"state-{tag}", work, tag, *args)
        else:
            threads = "8" if "threads" in tool else "0"
            argv = [sys.executable, str(ROOT / "bench" / "scenarios" / "sdk_loop.py")]
            argv += [str(folder), "--threads", threads]
            env = syncd_env(server, OPENAI_BASE_URL=server.base_url)
            measured = run_measured(argv, env, work, tag)
        measured.check(f"{tool} over {folder.name}")
        created = server.stats()["counts"].get("create", 0)
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    if created != files:
        raise SystemExit(f"{tool}: {created} files created for {files} local files")
    return measured


def run(ws: Workspace, sizes: list[int]) -> ScenarioResult:
    result = ScenarioResult(1, f"{'/'.join(map(str, sizes))} files of 4 KiB, 30 ms latency")
    for count in sizes:
        folder = ws.fresh(f"s1-{count}") / "data"
        make_small_files(folder, count, FILE_BYTES, per_dir=100)
        work = ws.dir(f"s1-{count}")
        seconds = {}
        for tool in TOOLS:
            seconds[tool] = _run_tool(tool, folder, work, tool.replace(" ", "-")).seconds
        result.data[str(count)] = {t: round(s, 3) for t, s in seconds.items()}
        sequential, threaded, ours, wider = (seconds[t] for t in TOOLS)
        for tool in TOOLS:
            result.rows.append(
                Row(
                    f"1: {count} files",
                    tool,
                    f"{seconds[tool]:.2f} s",
                    "",
                    f"{count / seconds[tool]:.0f} files/s",
                )
            )
        speedup = sequential / ours
        result.rows.append(
            Row(
                f"1: {count} files",
                "syncd speed-up vs sdk sequential",
                f"{speedup:.1f}x",
                f"{sequential:.2f} s",
                "",
                ">= 10x",
                "yes" if speedup >= 10 else "NO",
            )
        )
        result.rows.append(
            Row(
                f"1: {count} files",
                "syncd --concurrency 16 speed-up vs sdk sequential",
                f"{sequential / wider:.1f}x",
                f"{sequential:.2f} s",
                "",
                "(>= 10x)",
                "yes" if sequential / wider >= 10 else "NO",
            )
        )
        result.rows.append(
            Row(
                f"1: {count} files",
                "syncd vs sdk threads(8)",
                f"{threaded / ours:.2f}x",
                f"{threaded:.2f} s",
                "",
                ">= 1.5x",
                "yes" if threaded / ours >= 1.5 else "NO",
            )
        )
    return result
