"""Scenario 2: one large file (1 GiB) - syncd's throughput and memory vs `curl -F`.

The file is random bytes named ``big.bin`` with purpose ``assistants``: above the
threshold (256 MB) that purpose goes through the Uploads API, in 64 MiB parts, 4 at a
time, with the md5 computed beside them. `curl -F` sends the same file to POST /files
of the same server (started with a per-file limit above the file's size). syncd's time
is the whole `syncd sync` command: start-up, the SHA-256 of the file (the ledger's
hash), the parts, and the server assembling them at ``complete``. Target: syncd's
peak RSS <= 80 MiB.
"""

from __future__ import annotations

from serve_throughput import curl_upload, make_file

from scenarios.common import (
    MIB,
    Row,
    ScenarioResult,
    ServerProcess,
    Workspace,
    mib,
    syncd_sync,
)
from syncd.config import DEFAULT_MULTIPART_THRESHOLD

RSS_TARGET = 80 * MIB


def run(ws: Workspace, size_mib: int) -> ScenarioResult:
    work = ws.fresh("s2")
    folder = work / "data"
    folder.mkdir(exist_ok=True)
    path = folder / "big.bin"
    make_file(path, size_mib)
    size = size_mib * MIB
    # Smaller (--quick) files still take the Uploads API path.
    threshold = str(min(DEFAULT_MULTIPART_THRESHOLD, size))
    result = ScenarioResult(2, f"one {size_mib} MiB file")
    with ServerProcess(work / "store", max_bytes=size + MIB) as server:
        curl_seconds = curl_upload(server, path)
        server.reset_stats()
        ours = syncd_sync(
            server,
            folder,
            work / "state",
            work,
            "syncd",
            "--purpose",
            "assistants",
            env={"SYNCD_MULTIPART_THRESHOLD": threshold},
        ).check("syncd sync of the large file")
        stats = server.stats()
        server_rss = server.peak_rss_bytes()
    counts = stats["counts"]
    completes = [r for r in stats["requests"] if r["route"] == "upload_complete"]
    assemble = sum(r["finished"] - r["started"] for r in completes if r["finished"])
    label = f"2: {size_mib} MiB file"
    rate = size_mib / ours.seconds
    result.rows.append(
        Row(label, "syncd sync (Uploads API)", f"{ours.seconds:.2f} s", "", f"{rate:.0f} MiB/s")
    )
    if curl_seconds is not None:
        curl_rate = size_mib / curl_seconds
        result.rows.append(
            Row(
                label,
                "curl -F (POST /files)",
                f"{curl_seconds:.2f} s",
                "",
                f"{curl_rate:.0f} MiB/s",
            )
        )
        result.rows.append(
            Row(
                label,
                "syncd throughput vs curl",
                f"{rate / curl_rate:.2f}x",
                f"{curl_rate:.0f} MiB/s",
            )
        )
    result.rows.append(
        Row(
            label,
            "syncd peak RSS",
            mib(ours.peak_rss),
            "",
            "",
            "<= 80 MiB",
            "yes" if ours.peak_rss <= RSS_TARGET else "NO",
        )
    )
    result.notes.append(
        f"syncd sent {counts.get('upload_part', 0)} parts, {counts.get('upload_complete', 0)} "
        f"complete; the server's complete (assembly + md5 check) took {assemble:.2f} s of "
        f"syncd's {ours.seconds:.2f} s; server peak RSS {mib(server_rss)}"
    )
    result.data.update(
        syncd_seconds=round(ours.seconds, 3),
        curl_seconds=None if curl_seconds is None else round(curl_seconds, 3),
        syncd_peak_rss=ours.peak_rss,
        server_complete_seconds=round(assemble, 3),
        counts=counts,
    )
    return result
