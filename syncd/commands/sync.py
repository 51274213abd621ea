"""``syncd sync FOLDER``: make the remote hold exactly what the folder holds, once.

Exit codes: 0 when the remote equals the folder; 1 when any file failed, a guard
refused deletes or the key was refused (with a summary on stderr); 2 for usage and
configuration errors (a missing folder included, and a base URL that answers 404 or
cannot list files: the pass stops before any upload and records nothing per file);
``--retry-failed`` tries files that failed for good again; 128 + the signal after Ctrl-C,
SIGTERM or SIGHUP (see ``Interrupt``). ``--dry-run`` lists every planned
action on stdout and makes no write call; ``--json`` prints the summary as JSON on
stdout. The mirror options (``add_mirror_arguments``/``mirror_from_args``) are shared
with ``syncd run``. With a vector store the command waits until nothing is indexing
(``syncd.sync.vector_wait``; Ctrl-C stops waiting) and is in sync only when the store
holds every file indexed. Text output (the plan, the summary on stderr) shows paths,
store names and reasons (which may quote a server) with control characters escaped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from syncd.api import UPLOAD_PURPOSES
from syncd.commands._options import add_state_argument, checked_option
from syncd.commands._remote import add_remote_arguments, open_remote, remote_identity
from syncd.commands._vectors import add_vector_arguments, print_indexing, with_vector_store
from syncd.config import (
    MirrorConfig,
    check_concurrency,
    check_max_delete,
    check_max_uploads_per_minute,
    load_config,
    mirror_for_folder,
)
from syncd.daemon.signals import SignalRelay
from syncd.errors import ConfigError, FolderUnavailableError, WrongEndpointError
from syncd.local.scan import Scanner, display_path
from syncd.paths import ledger_path
from syncd.remote.protocol import PacingStatus
from syncd.restore.names import printable
from syncd.state.ledger import META_FOLDER, Ledger
from syncd.sync.binding import SWITCH_OPTION, bind_remote
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
        help="actions in flight at once, fixed (default: adaptive, 4 to 64 from 8)",
    )
    parser.add_argument(
        "--max-uploads-per-minute",
        type=checked_option(int, "a whole number", check_max_uploads_per_minute),
        metavar="N",
        help="pace uploads to at most N per minute (default: 1000 for api.openai.com, "
        "else learned from the server's rate-limit headers and 429s; 0: no pacing)",
    )
    parser.add_argument(
        "--follow-links",
        action="store_true",
        default=None,
        help="follow symbolic links that stay inside the folder",
    )
    parser.add_argument(
        "--create-folder",
        action="store_true",
        help="create the folder if it does not exist (else a missing folder is an error: "
        "a typo must not mirror an empty folder)",
    )
    add_vector_arguments(parser)
    add_remote_arguments(parser)
    parser.add_argument(
        SWITCH_OPTION,
        action="store_true",
        help="the ledger mirrored to another remote: forget the copies there (they are "
        "left untouched) and mirror everything to this one from scratch",
    )


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
        max_uploads_per_minute=args.max_uploads_per_minute,
    )


def create_folder(folder: Path) -> None:
    """``--create-folder``: make a missing folder (and its parents); ConfigError if not."""
    if folder.exists():
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create folder {folder}: {exc.strerror or exc}") from None
    print(f"syncd: created folder {folder}", file=sys.stderr)


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
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="try files whose upload failed for good again, although they did not change",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    env = os.environ
    mirror = mirror_from_args(args, env)
    if args.create_folder:
        create_folder(mirror.folder)
    try:
        Scanner(mirror.folder, mirror.path_filter).check_root()
    except FolderUnavailableError as exc:
        hint = "" if mirror.folder.exists() else " (a typo? --create-folder creates it)"
        raise ConfigError(f"{exc}{hint}") from None
    ledger_file = ledger_path(mirror.folder, mirror.state_path, env)
    with (
        Ledger.open(ledger_file) as ledger,
        open_remote(
            args,
            ledger_file.parent,
            pool_size=mirror.max_in_flight + 2,
            uploads_per_minute=(mirror.max_uploads_per_minute,),
        ) as remote,
    ):
        ledger.set_meta(META_FOLDER, str(mirror.folder))
        identity = remote_identity(args, ledger_file.parent)
        note = bind_remote(
            ledger, remote, identity, switch=args.switch_remote, record=not args.dry_run
        )
        if note:
            print(f"syncd: {note}", file=sys.stderr)
        engine = SyncEngine(
            mirror,
            ledger,
            remote,
            reporter=make_reporter(sys.stderr),
            step_hook=crash_hook_from_env(env),
        )
        interrupt = Interrupt(engine)
        with SignalRelay(interrupt.stop, lambda: None, hangup_stops=True):
            result = _passes(engine, ledger, dry_run=args.dry_run, retry_failed=args.retry_failed)
            wait_for_indexing(engine, result, on_progress=print_indexing)
        preview = []  # --dry-run: what the vector store's step would do after the plan
        if args.dry_run and engine.vectors is not None and result.plan is not None:
            preview = engine.vectors.preview(result.plan.actions)
    interrupt.done.set()
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    elif args.dry_run:
        print_plan(result)
        for verb, name, why in preview:
            print(printable(f"{verb:8} {display_path(name)}  ({why})"))
    print_summary(result)
    if result.interrupted:
        code = 128 + interrupt.signum
        if result.counts.get("abandoned"):
            # Worker threads still hold requests nobody waits for: do not join them.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    if result.fatal_cause == WrongEndpointError.cause:
        return 2  # a configuration mistake: the base URL
    if args.dry_run:
        return 1 if result.refusal or any(p.error for p in result.problems) else 0
    return 0 if result.in_sync else 1


def _passes(engine: SyncEngine, ledger: Ledger, *, dry_run: bool, retry_failed: bool) -> PassResult:
    """The full pass, then up to ``FOLLOW_UP_PASSES`` over files that changed meanwhile."""
    queue = DirtyQueue(ledger)  # a full pass also covers what a daemon left queued
    # Someone asked for this run: files waiting out a retry backoff are tried now.
    result = engine.run_pass(dry_run=dry_run, retry_waiting=True, retry_failed=retry_failed)
    queue.settle(result, None, retry_unfinished=False)
    for _ in range(FOLLOW_UP_PASSES):
        if dry_run or not result.requeued or result.fatal or result.interrupted:
            break
        again = set(result.requeued)
        later = engine.run_pass(only_paths=again, check_remote=False)
        queue.settle(later, again, retry_unfinished=False)
        result.absorb(later)
    return result


class Interrupt:
    """The first Ctrl-C (SIGINT, SIGTERM, SIGHUP) of a running ``syncd sync``.

    No new request starts; what is in flight gets the engine's ``stop_grace`` to finish;
    the pass is recorded ``interrupted`` with what it did, and the command exits
    128 + the signal (130 for Ctrl-C). A second signal exits at once (``SignalRelay``):
    the write-ahead intents make that as safe as a crash. Should the pass still not end
    ``BACKSTOP_SECONDS`` after the grace (a long hash, a listing), the process exits.
    """

    BACKSTOP_SECONDS = 5.0

    def __init__(self, engine: SyncEngine) -> None:
        self.engine = engine
        self.signum = 0
        self.done = threading.Event()

    def stop(self, signum: int) -> None:
        """Called once, on the signal thread."""
        self.signum = signum
        self.engine.request_stop()
        threading.Thread(target=self._backstop, name="syncd-backstop", daemon=True).start()
        print(
            f"syncd: interrupted: no new uploads; waiting up to {self.engine.stop_grace:g} s "
            "for those in flight (Ctrl-C again to quit at once)",
            file=sys.stderr,
        )

    def _backstop(self) -> None:
        if not self.done.wait(self.engine.stop_grace + self.BACKSTOP_SECONDS):
            print(
                "syncd: interrupted: the pass did not stop in time; exiting now "
                "(the next run settles what was in flight)",
                file=sys.stderr,
            )
            sys.stderr.flush()
            os._exit(128 + self.signum)


def print_plan(result: PassResult) -> None:
    """Every planned action with its path, one per line, on stdout (escaped: a path may
    hold control characters)."""
    if result.plan is None:
        return
    for action in result.plan.actions:
        print(printable(f"{action.kind.value:8} {action.path}  ({action.reason})"))
    for action in result.plan.refused:
        print(printable(f"{'refused':8} {action.path}  (delete refused by the mass-delete guard)"))


def print_summary(result: PassResult) -> None:
    """The outcome on stderr: counts, then one line per file that needs attention. Each
    line is escaped whole (``printable``): paths, reasons quoting a server, the vector
    store's lines."""

    def say(line: str) -> None:
        print(f"syncd: {printable(line)}", file=sys.stderr)

    for problem in result.problems:
        say(f"{'error' if problem.error else 'skipped'}: {problem.path}: {problem.reason}")
    for outcome in result.failures:
        say(f"failed: {display_path(outcome.action.path)}: {outcome.reason}")
    for path, reason, permanent in result.still_failing:
        kind = "failed earlier, unchanged since" if permanent else "waiting to retry"
        say(f"{kind}: {path}: {reason}")
    if any(permanent for _, _, permanent in result.still_failing):
        say("files that failed for good are tried again once changed, or now with --retry-failed")
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
    if result.interrupted:
        not_run, abandoned = result.counts.get("not_run", 0), result.counts.get("abandoned", 0)
        detail = f"{not_run} not started"
        if abandoned:
            detail += f", {abandoned} still in flight were left to the next run"
        say(f"interrupted: {detail}; run `syncd sync` again to finish")
    for route in result.pacing:
        say(pacing_line(route))
    for line in result.vectors.lines() if result.vectors is not None else ():
        say(line)
    say(_counts_line(result))


def pacing_line(route: dict[str, Any]) -> str:
    """``uploads paced at 600/min (server limit): 1,990 waited 195.2 s in all, 0 answered 429``."""
    status = PacingStatus.from_json(route)
    return (
        f"{status.describe()}: {status.delayed_requests:,} waited "
        f"{status.delayed_seconds:.1f} s in all, {status.rate_limited:,} answered 429"
    )


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
    for key, label in (("not_run", "not started"), ("abandoned", "abandoned")):
        if counts.get(key):
            parts.append(f"{counts[key]} {label}")
    seconds = result.finished_at - result.started_at
    megabytes = result.bytes_uploaded / 1_000_000
    state = "in sync" if result.in_sync else "NOT in sync"
    return f"{state}: {', '.join(parts)} ({megabytes:.1f} MB in {seconds:.1f} s)"
