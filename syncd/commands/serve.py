"""`syncd serve`: a local, stateful server that speaks the Files API.

Prints one line to stdout once it accepts connections (tests and scripts wait for it)::

    syncd serve: listening on http://127.0.0.1:8750/v1 (store: /path/to/store)

The key is best given in ``SYNCD_SERVE_API_KEY`` (argv is visible to every user of the
machine); ``--api-key`` is there for quick manual use. Faults for tests come from
``--faults`` or ``SYNCD_SERVE_FAULTS`` (inline JSON or ``@file``).

As strict as the real API by default: content of ``user_data``, ``assistants``,
``fine-tune`` and ``evals`` files is refused (``--allow-all-downloads`` serves it).
``--rate-limit [ROUTE=]COUNT/UNIT[:BURST]`` (repeatable) adds OpenAI-style request limits
(``syncd.server.ratelimit``). ``--header-timeout``, ``--body-timeout``, ``--idle-timeout``
and ``--max-connections`` set the bounds of ``syncd.server.connection``. A value that
does not parse is a usage error (exit 2) naming its option.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import structlog

from syncd.api import MAX_FILE_BYTES
from syncd.errors import ConfigError
from syncd.server import clock
from syncd.server.connection import ServerLimits
from syncd.server.embedded import ServeOptions, default_data_dir, serve_forever
from syncd.server.faults import load_faults
from syncd.server.gate import ROUTE_NAMES
from syncd.server.ratelimit import parse_rate_limits
from syncd.server.vector_store_db import DEFAULT_INDEX_DELAY, DEFAULT_INDEX_WORKERS

API_KEY_ENV = "SYNCD_SERVE_API_KEY"
FAULTS_ENV = "SYNCD_SERVE_FAULTS"
MAX_TIMEOUT_SECONDS = 86400.0
MAX_CONNECTIONS = 100_000


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run a local Files-API-compatible server",
        description="Serve the Files API (/v1/files, /v1/uploads) and vector stores "
        "(/v1/vector_stores) from a folder on disk.",
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
    parser.add_argument(
        "--allow-all-downloads",
        action="store_true",
        help="serve the content of every file; by default, like the real API, files of "
        "purpose user_data, assistants, fine-tune and evals cannot be downloaded (400)",
    )
    parser.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        metavar="[ROUTE=]COUNT/UNIT[:BURST]",
        help="a token bucket like OpenAI's: 429 beyond it, x-ratelimit-* headers on every "
        f"answer; ROUTE defaults to create (POST /v1/files), UNIT is s, min, h or day, "
        f"BURST defaults to COUNT; repeatable, one per route ({', '.join(ROUTE_NAMES)})",
    )
    defaults = ServerLimits()
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=defaults.header_timeout,
        metavar="SECONDS",
        help=f"time for a request head to arrive (default {defaults.header_timeout:g})",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=defaults.body_timeout,
        metavar="SECONDS",
        help=f"time for a whole request body to arrive (default {defaults.body_timeout:g})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout,
        metavar="SECONDS",
        help="longest silence within a request body, or while a client reads nothing of "
        f"an answer (default {defaults.idle_timeout:g})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=defaults.max_connections,
        metavar="N",
        help=f"connections held at once; more are answered 503 (default "
        f"{defaults.max_connections})",
    )
    parser.add_argument(
        "--index-delay",
        type=float,
        default=DEFAULT_INDEX_DELAY,
        metavar="SECONDS",
        help="how long indexing one vector store file takes (default "
        f"{DEFAULT_INDEX_DELAY:g}); faults can make it fail or stall",
    )
    parser.add_argument(
        "--index-workers",
        type=int,
        default=DEFAULT_INDEX_WORKERS,
        metavar="N",
        help=f"vector store files indexed at once (default {DEFAULT_INDEX_WORKERS})",
    )
    parser.set_defaults(func=run)


def _limits(args: argparse.Namespace) -> ServerLimits:
    for option, value in (
        ("--header-timeout", args.header_timeout),
        ("--body-timeout", args.body_timeout),
        ("--idle-timeout", args.idle_timeout),
    ):
        if not 0 < value <= MAX_TIMEOUT_SECONDS:
            raise ConfigError(f"{option} must be between 0 and {MAX_TIMEOUT_SECONDS} seconds")
    if not 1 <= args.max_connections <= MAX_CONNECTIONS:
        raise ConfigError(f"--max-connections must be between 1 and {MAX_CONNECTIONS}")
    return ServerLimits(
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        idle_timeout=args.idle_timeout,
        max_connections=args.max_connections,
    )


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, not {args.port}")
    if args.max_bytes < 1:
        raise ConfigError("--max-bytes must be a positive number of bytes")
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    faults = load_faults(args.faults if args.faults is not None else os.environ.get(FAULTS_ENV))
    if not 0 <= args.index_delay <= MAX_TIMEOUT_SECONDS:
        raise ConfigError(f"--index-delay must be between 0 and {MAX_TIMEOUT_SECONDS} seconds")
    if not 1 <= args.index_workers <= MAX_CONNECTIONS:
        raise ConfigError(f"--index-workers must be between 1 and {MAX_CONNECTIONS}")
    options = ServeOptions(
        api_key=api_key,
        max_bytes=args.max_bytes,
        faults=faults,
        allow_all_downloads=args.allow_all_downloads,
        rate_limits=parse_rate_limits(args.rate_limit, ROUTE_NAMES),
        limits=_limits(args),
        index_delay=args.index_delay,
        index_workers=args.index_workers,
    )
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
            downloads="all" if options.allow_all_downloads else "like the real API",
            rate_limits={route: str(rate) for route, rate in options.rate_limits.items()},
        )

    serve_forever(
        host=args.host, port=args.port, data_dir=data_dir, options=options, on_ready=ready
    )
    return 0
