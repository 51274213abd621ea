"""Scenario 3: a `syncd sync` pass with nothing to do over a large tree, vs `find`.

The tree (100,000 files of 64 bytes, 1,000 to a directory) is mirrored once with 32
workers (``Workspace.mirrored_tree``; its time is reported). Then the no-change pass
runs three times and the best time counts; `find FOLDER -type f -printf '%s %T@\\n'`
also runs three times (output to a file) and its best counts. Both run with the tree
in the page cache. The pass includes what every full pass does: Python start-up, the
walk with a stat per file, loading the ledger, one remote listing of every file, and
planning. Target: <= 2x find. Also: syncd's peak RSS and the ledger's size on disk.
"""

from __future__ import annotations

import time

from serverproc import clean_env

from scenarios.common import (
    Row,
    ScenarioResult,
    Workspace,
    mib,
    run_measured,
    summary_of,
    syncd_sync,
    tree_size,
)

RUNS = 3


def find_seconds(folder: object, work: object) -> float:
    best = float("inf")
    for i in range(RUNS):
        argv = ["find", str(folder), "-type", "f", "-printf", "%s %T@\\n"]
        measured = run_measured(argv, clean_env(), work, f"find-{i}")  # type: ignore[arg-type]
        best = min(best, measured.check("find").seconds)
    return best


def run(ws: Workspace, files: int) -> ScenarioResult:
    started = time.monotonic()
    mirror = ws.mirrored_tree(files)
    work = ws.dir("s3")
    result = ScenarioResult(3, f"{files:,} files, pass with no changes")
    seconds, peak, requests = [], 0, {}
    with mirror.server() as server:
        for i in range(RUNS):
            server.reset_stats()
            measured = syncd_sync(server, mirror.folder, mirror.state, work, f"nochange-{i}")
            measured.check("no-change pass")
            summary = summary_of(measured)
            if summary.get("counts") or not summary.get("in_sync"):
                raise SystemExit(f"the no-change pass did something: {summary}")
            seconds.append(measured.seconds)
            peak = max(peak, measured.peak_rss)
            requests = server.stats()["counts"]
    found = find_seconds(mirror.folder, work)
    ours = min(seconds)
    ledger = tree_size(sorted(mirror.state.glob("*.db*")))
    label = f"3: {files:,} files"
    result.rows += [
        Row(
            label,
            "no-change syncd sync (best of 3)",
            f"{ours:.2f} s",
            f"find {found:.2f} s",
            f"{ours / found:.1f}x",
            "<= 2x find",
            "yes" if ours <= 2 * found else "NO",
        ),
        Row(label, "syncd peak RSS", mib(peak)),
        Row(label, "ledger on disk", mib(ledger), "", f"{ledger / files:.0f} B/file"),
        Row(
            label,
            "first mirror (32 workers)",
            f"{mirror.build_seconds:.0f} s",
            "",
            f"{files / mirror.build_seconds:.0f} files/s",
        ),
    ]
    if mirror.reused:
        result.notes.append(
            "the tree was built by an earlier run (--keep); its first-mirror time is from then"
        )
    result.notes.append(
        f"no-change passes took {', '.join(f'{s:.2f}' for s in seconds)} s; requests per "
        f"pass: {dict(requests)}"
    )
    result.data.update(
        pass_seconds=[round(s, 3) for s in seconds],
        find_seconds=round(found, 3),
        peak_rss=peak,
        ledger_bytes=ledger,
        build_seconds=round(mirror.build_seconds, 1),
        setup_seconds=round(time.monotonic() - started, 1),
    )
    return result
