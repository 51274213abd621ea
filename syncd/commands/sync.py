"""``syncd sync FOLDER``: make the remote hold exactly what the folder holds, once.

Exit codes: 0 when the remote equals the folder; 1 when any file failed, a guard
refused deletes or the key was refused (with a summary on stderr); 2 for usage and
configuration errors (a missing folder included). ``--dry-run`` lists every planned
action on stdout and makes no write call; ``--json`` prints the summary as JSON on
stdout. The mirror options (``add_mirror_arguments``/``mirror_from_args``) are shared
with ``syncd run``. With a vector store the command waits until nothing is indexing
(``syncd.sync.vector_wait``; Ctrl-C stops waiting) and is in sync only when the store
holds every file indexed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from syncd.api import UPLOAD_PURPOSES
from syncd.commands._options import add_state_argument, checked_option
from syncd.commands._remote import add_remote_arguments, open_remote
from syncd.commands._vectors import add_vector_arguments, print_indexing, with_vector_store
from syncd.config import (
    MirrorConfig,
    check_concurrency,
    check_max_delete,
    load_config,
    mirror_for_folder,
)
from syncd.errors import ConfigError, FolderUnavailableError
from syncd.local.scan import Scanner, display_path
from syncd.paths import ledger_path
from syncd.state.ledger import Ledger
from syncd.sync.engine import SyncEngine
from syncd.sync.progress import make_reporter
from syncd.sync.queue import DirtyQueue
from syncd.sync.result import PassResult
from syncd.sync.vector_wait import wait_for_indexing
from syncd.testing import crash_hook_from_env

FOLLOW_UP_PASSES = 2  # for files that changed while they were uploaded


def add_mirror_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that describe one mirror (shared by ``sync`` and ``run``)."""
    parser.add_argument(
        "folder",
        nargs="?",
        type=Path,
        metavar="FOLDER",
        help="the folder to mirror (optional with a one-mirror --config)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a TOML config with [[mirror]] tables (see config.example.toml)",
    )
    add_state_argument(parser)
    parser.add_argument(
        "--purpose",
        choices=UPLOAD_PURPOSES,
        help="purpose for files no rule matches (default: user_data)",
    )
    parser.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="mirror only matching paths (repeatable; ** spans directories)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="leave matching paths alone on both sides (repeatable)",
    )
    parser.add_argument(
        "--max-delete",
        type=checked_option(int, "a whole number", check_max_delete),
        metavar="N",
        help="refuse a pass deleting more than N remote files (default: "
        "refuse deleting more than half when more than 10 would go)",
    )
    parser.add_argument(
        "--concurrency",
        type=checked_option(int, "a whole number", check_concurrency),
        metavar="N",
        help="actions in flight at once (default: 8)",
    )
    parser.add_argument(
        "--follow-links",
        action="store_true",
        default=None,
        help="follow symbolic links that stay inside the folder",
    )
    add_vector_arguments(parser)
    add_remote_arguments(parser)


def mirror_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> MirrorConfig:
    """The mirror the options describe: the config file's, overridden by options."""
    config = load_config(args.config, env) if args.config else None
    mirror = mirror_for_folder(config, args.folder, env)
    mirror = with_vector_store(mirror, args)
    return mirror.with_overrides(
        purpose=args.purpose,
        include=tuple(args.include) if args.include else None,
        exclude=tuple(args.exclude) if args.exclude else None,
        max_delete=args.max_delete,
        concurrency=args.concurrency,
        state_path=args.state.absolute() if args.state else None,
        follow_links=args.follow_links,
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sync",
        help="mirror a folder once, like `rclone sync`",
        description="Upload new and changed files, delete remote copies of deleted files "
        "(only those syncd uploaded), then exit: 0 when the remote equals the folder.",
    )
    add_mirror_arguments(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be done; make no upload or delete"
    )
    parser.add_argument(
        "--json", action="store_true", help="print a machine-readable summary on stdout"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    env = os.environ
    mirror = mirror_from_args(args, env)
    try:
        Scanner(mirror.folder, mirror.path_filter).check_root()
    except FolderUnavailableError as exc:
        raise ConfigError(str(exc)) from None
    ledger_file = ledger_path(mirror.folder, mirror.state_path, env)
    with (
        Ledger.open(ledger_file) as ledger,
        open_remote(args, ledger_file.parent, pool_size=mirror.concurrency + 2) as remote,
    ):
        ledger.set_meta("folder", str(mirror.folder))
        engine = SyncEngine(
            mirror,
            ledger,
            remote,
            reporter=make_reporter(sys.stderr),
            step_hook=crash_hook_from_env(env),
        )
        queue = DirtyQueue(ledger)  # a full pass also covers what a daemon left queued
        # Someone asked for this run: files waiting out a retry backoff are tried now.
        result = engine.run_pass(dry_run=args.dry_run, retry_waiting=True)
        queue.settle(result, None, retry_unfinished=False)
        for _ in range(FOLLOW_UP_PASSES):
            if args.dry_run or not result.requeued or result.fatal:
                break
            again = set(result.requeued)
            later = engine.run_pass(only_paths=again, check_remote=False)
            queue.settle(later, again, retry_unfinished=False)
            result.absorb(later)
        wait_for_indexing(engine, result, on_progress=print_indexing)
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    elif args.dry_run:
        print_plan(result)
    print_summary(result)
    if args.dry_run:
        return 1 if result.refusal or any(p.error for p in result.problems) else 0
    return 0 if result.in_sync else 1


def print_plan(result: PassResult) -> None:
    """Every planned action with its path, one per line, on stdout."""
    if result.plan is None:
        return
    for action in result.plan.actions:
        print(f"{action.kind.value:8} {action.path}  ({action.reason})")
    for action in result.plan.refused:
        print(f"{'refused':8} {action.path}  (delete refused by the mass-delete guard)")


def print_summary(result: PassResult) -> None:
    """The outcome on stderr: counts, then one line per file that needs attention."""

    def say(line: str) -> None:
        print(f"syncd: {line}", file=sys.stderr)

    for problem in result.problems:
        say(f"{'error' if problem.error else 'skipped'}: {problem.path}: {problem.reason}")
    for outcome in result.failures:
        say(f"failed: {display_path(outcome.action.path)}: {outcome.reason}")
    for path, reason, permanent in result.still_failing:
        kind = "failed earlier, unchanged since" if permanent else "waiting to retry"
        say(f"{kind}: {path}: {reason}")
    for warning in result.warnings:
        say(f"warning: {warning}")
    if result.reconciled is not None:
        for error in result.reconciled.errors:
            say(f"reconcile: {error}")
    if result.requeued:
        say(f"still changing, not mirrored yet: {', '.join(sorted(result.requeued))}")
    if result.refusal:
        say(result.refusal)
    if result.deletes_skipped:
        say(f"{result.deletes_skipped} deletes skipped because uploads failed in this pass")
    if result.fatal:
        say(f"stopped: {result.fatal}")
    for line in result.vectors.lines() if result.vectors is not None else ():
        say(line)
    say(_counts_line(result))


def _counts_line(result: PassResult) -> str:
    if result.dry_run and result.plan is not None:
        planned: dict[str, int] = {}
        for action in result.plan.actions:
            planned[action.kind.value] = planned.get(action.kind.value, 0) + 1
        parts = [f"{n} to {kind}" for kind, n in sorted(planned.items())] or ["nothing to do"]
        return "dry run: " + ", ".join(parts)
    counts = result.counts
    parts = [f"{counts.get(k, 0)} {k}" for k in ("uploaded", "replaced", "deleted")]
    failed = len(result.failures) + len(result.still_failing)
    parts.append(f"{failed} failed")
    seconds = result.finished_at - result.started_at
    megabytes = result.bytes_uploaded / 1_000_000
    state = "in sync" if result.in_sync else "NOT in sync"
    return f"{state}: {', '.join(parts)} ({megabytes:.1f} MB in {seconds:.1f} s)"
