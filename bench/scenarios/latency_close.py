"""Scenario 4: from a file's close to its remote visibility, `syncd run --debounce 0.3`.

Reuses ``bench/latency.py``: files written one at a time (random pauses between them so
they do not fall in step with the daemon's timers); each latency is the server's finish
time of the create minus the close. p50 and p99 over the files.
"""

from __future__ import annotations

import statistics

from latency import TARGET_MARGIN, measure, percentile

from scenarios.common import Row, ScenarioResult, Workspace

DEBOUNCE = 0.3


def run(ws: Workspace, files: int) -> ScenarioResult:
    latencies = measure(DEBOUNCE, files, 200, ws.fresh("s4"))
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    target = DEBOUNCE + TARGET_MARGIN
    label = f"4: {files} files, debounce {DEBOUNCE} s"
    result = ScenarioResult(4, label)
    result.rows += [
        Row(label, "close-to-visible p50", f"{p50 * 1000:.0f} ms"),
        Row(
            label,
            "close-to-visible p99",
            f"{p99 * 1000:.0f} ms",
            "",
            "",
            f"<= {target * 1000:.0f} ms",
            "yes" if p99 <= target else "NO",
        ),
        Row(label, "close-to-visible max", f"{max(latencies) * 1000:.0f} ms"),
    ]
    result.data.update(latencies=[round(x, 4) for x in latencies])
    return result
