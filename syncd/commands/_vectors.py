"""The vector store options of ``sync`` and ``run``, and how ``sync`` shows the wait."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from syncd.config import MirrorConfig
from syncd.restore.names import printable
from syncd.sync.vector_report import VectorReport
from syncd.vector_config import with_store


def add_vector_arguments(parser: argparse.ArgumentParser) -> None:
    """``--vector-store NAME`` / ``--vector-store-id ID`` (over the config's keys)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--vector-store",
        metavar="NAME",
        help="also keep a vector store of this name exact (syncd creates it once and "
        "records its id); the config's attributes and chunking apply",
    )
    group.add_argument(
        "--vector-store-id",
        metavar="ID",
        help="also keep this existing vector store (vs_...) exact; files others attached "
        "to it are left alone",
    )


def with_vector_store(mirror: MirrorConfig, args: argparse.Namespace) -> MirrorConfig:
    """``mirror`` with the store the options name, if they name one."""
    vector = with_store(
        mirror.vector,
        args.purpose or mirror.purpose,
        mirror.rules,
        name=getattr(args, "vector_store", None),
        store_id=getattr(args, "vector_store_id", None),
    )
    return mirror if vector is mirror.vector else dataclasses.replace(mirror, vector=vector)


def print_indexing(report: VectorReport) -> None:
    """A progress line while ``syncd sync`` waits for indexing (escaped: it names the store)."""
    line = printable(report.counts_line())
    print(f"syncd: waiting for indexing: {line}", file=sys.stderr, flush=True)
