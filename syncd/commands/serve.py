"""`syncd serve`: a local, stateful server that speaks the Files API.

Prints one line to stdout once it accepts connections (tests and scripts wait for it)::

    syncd serve: listening on http://127.0.0.1:8750/v1 (store: /path/to/store)

The key is best given in ``SYNCD_SERVE_API_KEY`` (argv is visible to every user of the
machine); ``--api-key`` is there for quick manual use. Faults for tests come from
``--faults`` or ``SYNCD_SERVE_FAULTS`` (inline JSON or ``@file``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import structlog

from syncd.api import MAX_FILE_BYTES
from syncd.errors import ConfigError
from syncd.server import clock
from syncd.server.embedded import default_data_dir, serve_forever
from syncd.server.faults import load_faults

API_KEY_ENV = "SYNCD_SERVE_API_KEY"
FAULTS_ENV = "SYNCD_SERVE_FAULTS"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run a local Files-API-compatible server",
        description="Serve the Files API (/v1/files, /v1/uploads) from a folder on disk.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument(
        "--port", type=int, default=8750, help="port to listen on; 0 picks a free one"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="store directory (default $XDG_STATE_HOME/syncd/serve)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"demand this key (prefer ${API_KEY_ENV}: argv is visible to all users); "
        "without one any key is accepted",
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=MAX_FILE_BYTES,
        help=f"largest file accepted, in bytes (default {MAX_FILE_BYTES})",
    )
    parser.add_argument(
        "--faults",
        default=None,
        help=f"fault injection for tests: JSON or @file (also ${FAULTS_ENV}); off by default",
    )
    parser.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="for tests: run the server's clock this many seconds ahead (negative: behind) "
        "of this host's, for created_at, expiry and the Date header",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, not {args.port}")
    if args.max_bytes < 1:
        raise ConfigError("--max-bytes must be a positive number of bytes")
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    faults = load_faults(args.faults if args.faults is not None else os.environ.get(FAULTS_ENV))
    data_dir: Path = (args.data or default_data_dir()).expanduser().resolve()
    log = structlog.get_logger(__name__)
    clock.set_offset(args.clock_offset)

    def ready(base_url: str) -> None:
        print(f"syncd serve: listening on {base_url} (store: {data_dir})", flush=True)
        log.info(
            "serve_ready",
            url=base_url,
            store=str(data_dir),
            auth="key" if api_key else "any key",
            faults=faults.to_json() if faults != type(faults)() else None,
        )

    serve_forever(
        host=args.host,
        port=args.port,
        data_dir=data_dir,
        api_key=api_key,
        max_bytes=args.max_bytes,
        faults=faults,
        on_ready=ready,
    )
    return 0
