"""``syncd approve-deletes FOLDER [--max N]``: allow the deletes the mass-delete guard held
back, while the daemon keeps running.

It records the approval in the folder's ledger (beside the daemon, which holds the
ledger: ``Ledger.open_beside_owner``), for the refusal waiting there and only for the
deletes that refusal holds back: a later refusal needs an approval of its own. A
running ``syncd run`` notices within a second, deletes those files, and says so in its
log (``deletes_approved``, ``approved_deletes_applied``) and ``STATUS=``; without a
daemon, the next ``syncd sync`` or ``syncd run`` carries them out.

``--max N`` approves only if the refusal holds at most N deletes (say how many you
checked; a refusal that grew since is not approved). Exit codes: 0 approved; 1 nothing
to approve (no refusal waits, or it holds more than ``--max``); 2 usage errors (no such
folder in the config, no ledger). The folder and the paths it lists are shown with
control characters escaped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from syncd.commands._options import add_state_argument, checked_option
from syncd.commands.status import find_ledger
from syncd.config import check_max_delete
from syncd.errors import ConfigError, NothingRefusedError, SyncdError
from syncd.restore.names import printable
from syncd.state.deletes import RefusalState, who_am_i
from syncd.state.ledger import Ledger


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "approve-deletes",
        help="allow the deletes the mass-delete guard refused (the daemon may keep running)",
        description="Approve the deletes the mass-delete guard held back for FOLDER: a "
        "running `syncd run` carries them out at once (those deletes only).",
    )
    parser.add_argument("folder", nargs="?", type=Path, metavar="FOLDER")
    add_state_argument(parser)
    parser.add_argument("--config", type=Path, metavar="FILE", help="a syncd config file")
    parser.add_argument(
        "--max",
        dest="max_deletes",
        type=checked_option(int, "a whole number", check_max_delete),
        metavar="N",
        help="approve only if at most N deletes are waiting (a check of what you looked at)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        path = find_ledger(args)
    except SyncdError as exc:
        raise ConfigError(str(exc)) from None
    ledger = Ledger.open_beside_owner(path)
    try:
        folder = printable(ledger.get_meta("folder") or str(args.folder or path))
        try:
            refusal = ledger.approve_refusal(
                by=who_am_i(), max_deletes=args.max_deletes, now=time.time()
            )
        except NothingRefusedError:
            approved = ledger.refusals(RefusalState.APPROVED)
            if approved:
                print(
                    f"syncd: {folder}: the refused deletes are approved already "
                    f"({len(approved[0].copies)} to go, approved by "
                    f"{printable(str(approved[0].approved_by))})",
                    file=sys.stderr,
                )
            else:
                print(
                    f"syncd: {folder}: no refused deletes to approve (the mass-delete guard "
                    "holds nothing back)",
                    file=sys.stderr,
                )
            return 1
        except SyncdError as exc:
            print(f"syncd: {folder}: {printable(str(exc))}", file=sys.stderr)
            return 1
    finally:
        ledger.close()
    print(
        f"syncd: {folder}: approved {len(refusal.copies)} deletes (refused "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(refusal.at))}); a running "
        "`syncd run` carries them out now, else the next sync or run does",
        file=sys.stderr,
    )
    for copy_path, _ in refusal.copies[:20]:
        print(f"  {printable(copy_path)}", file=sys.stderr)
    if len(refusal.copies) > 20:
        print(f"  ... and {len(refusal.copies) - 20} more", file=sys.stderr)
    return 0
