"""``syncd pull DEST``: bring the mirrored files back into DEST (see ``syncd.restore.pull``).

Two sources:

- the ledger (default): every file the ledger of one mirrored folder tracks, at its
  relative path, checked against the recorded size and SHA-256, with its mtime. The
  ledger is the one of ``--folder FOLDER``, the one ``--state PATH`` names, or the only
  one in the state directory (the command says which it chose).
- ``--all [--purpose P]``: every remote file of the account, under its remote filename
  cleaned of anything unsafe (``syncd.restore.names``); each change is said in one line.

Files whose purpose the API does not let anyone download (``user_data``, ``assistants``,
``fine-tune``, ``evals`` on the real API) are not asked for and nothing is written for
them; a short summary says how many, of which purposes, why and what to do
(``syncd.restore.undownloadable``), not one line per file.

Exit codes: 0 when every file is in DEST; 1 when any file failed, could not be
downloaded, was kept because a different file was in the way, or was not tried (the
summary says which); 2 for usage and configuration errors. Progress: a bar on a
terminal, one log line per file otherwise; problems always get one line each on
stderr, and a summary closes the run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import structlog

from syncd.api import UPLOAD_PURPOSES
from syncd.commands._display import TransferDisplay
from syncd.commands._options import add_state_argument, add_try_all_argument
from syncd.commands._remote import add_remote_arguments, open_remote
from syncd.config import DEFAULT_CONCURRENCY, MAX_CONCURRENCY
from syncd.errors import ConfigError, LedgerLockedError, SyncdError
from syncd.remote.protocol import FilesRemote
from syncd.restore.destination import Destination
from syncd.restore.names import printable
from syncd.restore.pull import (
    Puller,
    PullItem,
    PullOutcome,
    PullResult,
    choose_ledger,
    item_notes,
    ledger_items,
    remote_items,
    split_downloadable,
    state_dir,
    summarise,
    undownloadable,
)
from syncd.restore.undownloadable import pull_summary
from syncd.state.ledger import META_FOLDER, Ledger, lock_ledger

log = structlog.get_logger(__name__)


class PullDisplay(TransferDisplay):
    """``PullListener`` for the command: progress plus one line per file."""

    def finished(self, result: PullResult) -> None:
        quiet = (PullOutcome.SAME, PullOutcome.KEPT, PullOutcome.NOT_TRIED)
        if result.outcome in (*quiet, PullOutcome.NOT_DOWNLOADABLE):
            self.advanced(result.item.size)  # nothing streamed: the bar still moves on
        self.file_done()
        item = result.item
        fields = {"path": item.path, "file_id": item.file_id}
        if result.outcome is PullOutcome.PULLED:
            if not self.interactive:
                log.info("pulled", bytes=result.bytes, duration=round(result.duration, 3), **fields)
        elif result.outcome is PullOutcome.SAME:
            if not self.interactive:
                log.info("already_there", **fields)
        elif result.outcome is PullOutcome.NOT_TRIED:
            log.debug("not_tried", reason=result.message, **fields)
        elif result.outcome is PullOutcome.NOT_DOWNLOADABLE:  # summed up at the end
            log.debug("not_downloadable", reason=result.message, **fields)
        else:
            self.say(
                f"syncd: {result.outcome.value}: {printable(item.path)}: "
                f"{printable(result.message)}"
            )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "pull",
        help="download the mirrored files into a folder (restore)",
        description="Download every file a mirror's ledger tracks into DEST at its path, "
        "checked against the recorded SHA-256, or with --all every remote file under its "
        "(cleaned) remote name. Files already identical are skipped, so a second run "
        "only finishes what the first left. Files of purposes the API does not let anyone "
        "download (user_data, assistants, fine-tune, evals) cannot be restored; the "
        "summary counts them.",
    )
    parser.add_argument("dest", type=Path, metavar="DEST", help="the folder to restore into")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--folder",
        type=Path,
        metavar="FOLDER",
        help="the mirrored folder whose ledger to use (it may be gone)",
    )
    source.add_argument(
        "--all",
        action="store_true",
        help="every remote file of the account, named by its remote filename",
    )
    add_state_argument(parser)
    parser.add_argument(
        "--purpose", choices=UPLOAD_PURPOSES, help="with --all: only files of this purpose"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"downloads at once (default: {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a different file already at a ledger path (default: keep it)",
    )
    add_try_all_argument(parser)
    add_remote_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        raise ConfigError(f"--concurrency must be 1..{MAX_CONCURRENCY}")
    if args.purpose and not args.all:
        raise ConfigError("--purpose only applies with --all")
    env = os.environ
    display = PullDisplay(sys.stderr, verb="pulling")
    with Destination(args.dest) as dest, contextlib.ExitStack() as stack:
        if args.all:
            remote_state = state_dir(args.state, env)
        else:
            ledger_file, note = choose_ledger(args.folder, args.state, env)
            if note:
                display.say(f"syncd: {note}")
            remote_state = ledger_file.parent
            stack.enter_context(_hold_if_mirrored(ledger_file, args.dest))
        with open_remote(args, remote_state, pool_size=args.concurrency + 2) as remote:
            refused: list[PullResult] = []
            if args.all:
                items, problems, refused = _remote_plan(
                    remote, dest, args.purpose, display, ask_all=args.try_all_purposes
                )
            else:
                items, problems = _ledger_plan(ledger_file, display)
            puller = Puller(
                remote,
                dest,
                display,
                concurrency=args.concurrency,
                overwrite=args.overwrite,
                ask_all=args.try_all_purposes,
            )
            display.start(len(items), sum(i.size for i in items))
            try:
                results = puller.run(items)
            finally:
                display.stop()
    for result in refused:
        display.finished(result)
    return report(refused + results, problems, dest_path=args.dest)


@contextlib.contextmanager
def _hold_if_mirrored(ledger_file: Path, dest: Path) -> Iterator[None]:
    """Pulling into the folder the ledger mirrors (or a folder inside it, or around it):
    hold the ledger's lock for the whole pull, so that no ``syncd run`` or ``sync`` of
    that folder runs meanwhile -- it would take the files not restored yet for files
    deleted, and delete their only remote copies. Refused while one runs."""
    with Ledger.open_readonly(ledger_file) as ledger:
        folder = ledger.get_meta(META_FOLDER)
    if folder is None or not _overlap(Path(folder), dest):
        yield
        return
    try:
        lock = lock_ledger(ledger_file)
    except LedgerLockedError as exc:
        raise SyncdError(
            f"cannot pull into {dest} while {folder} is being mirrored: {exc}. A pull into "
            "a folder syncd mirrors would make that mirror delete the remote copies of "
            "what is not back yet; stop it first (systemctl stop syncd), pull, then start it"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _overlap(folder: Path, dest: Path) -> bool:
    """Whether ``dest`` is ``folder``, inside it, or holds it."""
    a, b = folder.resolve(), dest.resolve()
    return a == b or a in b.parents or b in a.parents


def _ledger_plan(ledger_file: Path, display: TransferDisplay) -> tuple[list[PullItem], int]:
    """The ledger's files; says what is skipped. Returns the items and the refusals."""
    with Ledger.open_readonly(ledger_file) as ledger:
        items, skipped = ledger_items(ledger.rows())
    for skip in skipped:
        kind = "refused" if skip.error else "skipped"
        display.say(f"syncd: {kind}: {printable(skip.path)}: {printable(skip.reason)}")
    return items, sum(1 for skip in skipped if skip.error)


def _remote_plan(
    remote: FilesRemote,
    dest: Destination,
    purpose: str | None,
    display: TransferDisplay,
    *,
    ask_all: bool = False,
) -> tuple[list[PullItem], int, list[PullResult]]:
    """Every remote file that may be downloaded, under a safe name; says each rename and
    refusal. Returns the items, the count of refused names, and the results of the files
    whose purpose cannot be downloaded."""
    listing, not_served = split_downloadable(
        list(remote.list_files(purpose=purpose)), ask_all=ask_all
    )
    items, refused = remote_items(listing, dest)
    for refusal in refused:
        display.say(
            f"syncd: refused: '{printable(refusal.file.filename)}' "
            f"({printable(refusal.file.id)}): {printable(refusal.reason)}"
        )
    names = {f.id: f.filename for f in listing}
    for item in items:
        if item.notes:
            display.say(
                f"syncd: renamed: '{printable(names[item.file_id])}' "
                f"({printable(item.file_id)}) -> {printable(item.path)}: "
                f"{printable(item_notes(item))}"
            )
    return items, len(refused), not_served


def report(results: Sequence[PullResult], problems: int, *, dest_path: Path) -> int:
    """The closing summary on stderr; the exit code."""
    counts = summarise(results)
    for line in pull_summary(undownloadable(results)):
        print(f"syncd: {line}", file=sys.stderr)
    not_tried = [r for r in results if r.outcome is PullOutcome.NOT_TRIED]
    if not_tried:
        print(f"syncd: stopped early ({printable(not_tried[0].message)})", file=sys.stderr)
    not_served = counts["not_downloadable"]
    bad = counts["failed"] + counts["kept"] + counts["not_tried"] + not_served + problems
    megabytes = counts["bytes"] / 1_000_000
    state = "complete" if bad == 0 else "INCOMPLETE"
    print(
        f"syncd: pull into {dest_path} {state}: {counts['pulled']} pulled ({megabytes:.1f} MB), "
        f"{counts['same']} already there, {counts['kept']} kept, {counts['failed']} failed"
        + (f", {not_served} not downloadable" if not_served else "")
        + (f", {counts['not_tried']} not tried" if counts["not_tried"] else "")
        + (f", {problems} refused" if problems else ""),
        file=sys.stderr,
    )
    return 0 if bad == 0 else 1
