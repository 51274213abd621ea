"""The results table (terminal and Markdown) and the plot of scenario 1."""

from __future__ import annotations

from pathlib import Path

from scenarios.common import ScenarioResult

COLUMNS = ("scenario", "measure", "value", "baseline", "ratio", "target", "met")


def _cells(results: list[ScenarioResult]) -> list[list[str]]:
    return [
        [row.scenario, row.measure, row.value, row.baseline, row.ratio, row.target, row.met]
        for result in results
        for row in result.rows
    ]


def print_table(results: list[ScenarioResult], machine: str) -> None:
    cells = _cells(results)
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(COLUMNS)]
    print(f"syncd benchmarks on loopback ({machine})")
    print("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    for result in results:
        for note in result.notes:
            print(f"  note ({result.number}): {note}")


def markdown_table(results: list[ScenarioResult], machine: str, command: str) -> str:
    lines = [
        "# syncd benchmarks (latest run)",
        "",
        f"`{command}` on {machine}; `syncd serve` on loopback.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += [
        "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in _cells(results)
    ]
    notes = [(r.number, n) for r in results for n in r.notes]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- ({number}) {note}" for number, note in notes]
    if any(r.number == 1 for r in results):
        lines += ["", "![scenario 1](scenario1.png)"]
    return "\n".join(lines) + "\n"


def plot_scenario1(result: ScenarioResult, out: Path) -> str:
    """Grouped bars of files/s per tool and folder size; a message saying what happened."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    sizes = list(result.data)
    sizes = [s for s in sizes if s.isdigit()]
    tools = list(result.data[sizes[0]])
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    width = 0.8 / len(tools)
    for i, tool in enumerate(tools):
        rates = [int(size) / result.data[size][tool] for size in sizes]
        xs = [n + (i - (len(tools) - 1) / 2) * width for n in range(len(sizes))]
        bars = ax.bar(xs, rates, width, label=tool)
        ax.bar_label(bars, labels=[f"{r:.0f}" for r in rates], fontsize=8)
    ax.set_xticks(range(len(sizes)), [f"{int(s):,} files of 4 KiB" for s in sizes])
    ax.set_ylabel("files per second (higher is better)")
    ax.set_title("Uploading small files, 30 ms latency per request")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return f"plot of scenario 1 in {out}"
