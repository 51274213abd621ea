"""The loop a user would write with the official SDK: upload every file of a folder.

    OPENAI_BASE_URL=... OPENAI_API_KEY=... python bench/scenarios/sdk_loop.py FOLDER [--threads N]

``--threads 0`` (the default) is the plain sequential loop; ``--threads 8`` runs the
same call in a ``ThreadPoolExecutor(8)``. One client (one connection pool) either way,
the SDK's defaults otherwise. Prints the number of files uploaded.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--purpose", default="user_data")
    args = parser.parse_args()
    client = openai.OpenAI()
    paths = [Path(d) / n for d, _, names in os.walk(args.folder) for n in sorted(names)]

    def upload(path: Path) -> str:
        with open(path, "rb") as handle:
            return client.files.create(file=handle, purpose=args.purpose).id

    if args.threads:
        with ThreadPoolExecutor(args.threads) as pool:
            ids = list(pool.map(upload, paths))
    else:
        ids = [upload(path) for path in paths]
    print(len(ids))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
