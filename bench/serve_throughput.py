"""Upload/download throughput of `syncd serve` on loopback, and the server's peak memory.

    python bench/serve_throughput.py [--size-mib 1024] [--keep-dir DIR]

Starts `syncd serve` on a free port (store in a temporary directory unless --keep-dir),
writes one incompressible file of the given size, then times:

- ``curl -F`` upload (skipped when curl is missing),
- an httpx streaming multipart upload (what a Python client does),
- a streamed download of /content to /dev/null.

Each figure is MiB/s over the whole request (including the server's fsync). The server's
peak RSS (VmHWM) is reported so a regression to whole-file buffering shows at once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serverproc import ServerProcess

MIB = 1024 * 1024


def make_file(path: Path, size_mib: int) -> None:
    block = os.urandom(MIB)
    with open(path, "wb") as out:
        for i in range(size_mib):
            out.write(i.to_bytes(8, "big") + block[8:])


def curl_upload(server: ServerProcess, path: Path) -> float | None:
    curl = shutil.which("curl")
    if curl is None:
        return None
    started = time.perf_counter()
    result = subprocess.run(
        [
            curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
            "-H", f"Authorization: Bearer {server.client_key}",
            "-F", "purpose=user_data", "-F", f"file=@{path}",
            f"{server.base_url}/files",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if result.stdout.strip() != "200":
        raise SystemExit(f"curl upload failed: HTTP {result.stdout.strip()}")
    return elapsed


def httpx_upload(server: ServerProcess, path: Path) -> tuple[float, str]:
    with open(path, "rb") as handle, httpx.Client(timeout=600) as http:
        started = time.perf_counter()
        response = http.post(
            f"{server.base_url}/files",
            headers=server.headers(),
            data={"purpose": "user_data"},
            files={"file": (path.name, handle)},
        )
        elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, str(response.json()["id"])


def download(server: ServerProcess, file_id: str) -> float:
    with httpx.Client(timeout=600) as http:
        started = time.perf_counter()
        with http.stream(
            "GET", f"{server.base_url}/files/{file_id}/content", headers=server.headers()
        ) as response:
            response.raise_for_status()
            for _ in response.iter_raw(MIB):
                pass
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--keep-dir", type=Path, default=None)
    args = parser.parse_args()
    work = args.keep_dir or Path(tempfile.mkdtemp(prefix="syncd-bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    source = work / "payload.bin"
    try:
        make_file(source, args.size_mib)
        size = args.size_mib * MIB
        with ServerProcess(
            work / "store", max_bytes=size + MIB, allow_all_downloads=True
        ) as server:
            rss_start = server.peak_rss_bytes()
            rows: list[tuple[str, float | None]] = [("curl -F upload", curl_upload(server, source))]
            elapsed, file_id = httpx_upload(server, source)
            rows.append(("httpx multipart upload", elapsed))
            rows.append(("download /content", download(server, file_id)))
            peak = server.peak_rss_bytes()
        print(f"syncd serve on loopback, one {args.size_mib} MiB file")
        print(f"{'scenario':<26}{'seconds':>10}{'MiB/s':>10}")
        for name, seconds in rows:
            if seconds is None:
                print(f"{name:<26}{'n/a':>10}{'n/a':>10}")
            else:
                print(f"{name:<26}{seconds:>10.2f}{args.size_mib / seconds:>10.0f}")
        print(f"server peak RSS: {peak / MIB:.1f} MiB (at start {rss_start / MIB:.1f} MiB)")
    finally:
        if args.keep_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
