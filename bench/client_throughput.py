"""Upload throughput of HttpFilesRemote against `syncd serve` on loopback.

    python bench/client_throughput.py [--small 2000] [--small-bytes 4096] [--threads 1,4,8,16]
                                     [--large-mib 512]

Run from the repository root. Starts `syncd serve` (a child process) per scenario,
uploads --small files of --small-bytes each with N worker threads sharing one remote,
then one --large-mib file; prints files/s and MiB/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path.cwd() / "tests"))
from serverproc import ServerProcess

from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.settings import RemoteSettings

MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--small-bytes", type=int, default=4096)
    parser.add_argument("--threads", default="1,4,8,16")
    parser.add_argument("--large-mib", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "small"
        folder.mkdir()
        paths = []
        for n in range(args.small):
            path = folder / f"{n:06}.txt"
            path.write_bytes(os.urandom(args.small_bytes))
            paths.append(path)
        print(f"{'scenario':<34}{'seconds':>9}{'files/s':>10}{'MiB/s':>9}")
        for threads in (int(t) for t in args.threads.split(",")):
            with ServerProcess(root / f"store-{threads}") as server:
                settings = RemoteSettings(base_url=server.base_url, api_key=server.client_key)
                with HttpFilesRemote(settings, pool_size=threads) as remote:
                    remote.upload(paths[0], "warm", "user_data")
                    start = time.perf_counter()
                    with ThreadPoolExecutor(threads) as pool:
                        list(pool.map(lambda p: remote.upload(p, p.name, "user_data"), paths))
                    took = time.perf_counter() - start
            mib = args.small * args.small_bytes / MIB
            label = f"{args.small} x {args.small_bytes} B, {threads} threads"
            print(f"{label:<34}{took:>9.2f}{args.small / took:>10.0f}{mib / took:>9.1f}")
        big = root / "big.bin"
        block = os.urandom(MIB)
        with open(big, "wb") as out:
            for i in range(args.large_mib):
                out.write(i.to_bytes(8, "big") + block[8:])
        with ServerProcess(root / "store-large", allow_all_downloads=True) as server:
            settings = RemoteSettings(base_url=server.base_url, api_key=server.client_key)
            with HttpFilesRemote(settings) as remote:
                start = time.perf_counter()
                uploaded = remote.upload(big, "big.bin", "user_data")
                up = time.perf_counter() - start
                start = time.perf_counter()
                with open(os.devnull, "wb") as sink:
                    remote.download(uploaded.id, sink)
                down = time.perf_counter() - start
        label = f"1 x {args.large_mib} MiB upload"
        print(f"{label:<34}{up:>9.2f}{'':>10}{args.large_mib / up:>9.1f}")
        label = f"1 x {args.large_mib} MiB download"
        print(f"{label:<34}{down:>9.2f}{'':>10}{args.large_mib / down:>9.1f}")


if __name__ == "__main__":
    main()
