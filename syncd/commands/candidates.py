"""``syncd candidates [FOLDER]``: remote files kept as possibly syncd's, and what to do.

When an upload's answer was lost and more files than syncd's requests could have made
appear in its window, or one another mirror of this host may have made, syncd cannot
prove which is its own: it adopts none, deletes none, uploads again and keeps them
here (``syncd status`` counts them, ``syncd ls`` marks them ``?``). This command lists
them (read-only: it works while a daemon runs), and, only for ids the user names:

- ``--delete ID...``: delete those remote files (each must be a kept candidate of this
  ledger; a delete intent is committed first, as for every delete). ``--dry-run`` says
  what would be deleted and deletes nothing.
- ``--dismiss ID...``: "not syncd's": stop reporting it; the file stays and is never
  matched again.

Both take the ledger's lock (stop a daemon mirroring the folder first). Exit 0 when
everything asked was done, 1 when an id is not a candidate or a delete failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd.commands._options import add_state_argument
from syncd.commands._remote import add_remote_arguments, open_remote
from syncd.commands.status import find_ledger
from syncd.errors import ConfigError, FatalError, RemoteError
from syncd.restore.names import printable
from syncd.state.ledger import CandidateRow, Ledger


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "candidates",
        help="list remote files kept as possibly syncd's; delete or dismiss them by id",
        description="List the remote files syncd kept because it could not prove they are "
        "its own (possibly ours, not deleted). Delete them with --delete ID, or stop "
        "reporting them with --dismiss ID; nothing happens to an id not named.",
    )
    parser.add_argument("folder", nargs="?", type=Path, metavar="FOLDER")
    add_state_argument(parser)
    parser.add_argument("--config", type=Path, metavar="FILE", help="a syncd config file")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--delete", nargs="+", metavar="ID", default=[], help="delete these remote files"
    )
    action.add_argument(
        "--dismiss",
        nargs="+",
        metavar="ID",
        default=[],
        help="these are not syncd's: keep them, stop reporting them",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="with --delete: say what would go, delete nothing"
    )
    parser.add_argument("--json", action="store_true", help="print the candidates as JSON")
    add_remote_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.dry_run and not args.delete:
        raise ConfigError("--dry-run goes with --delete")
    path = find_ledger(args)
    if args.delete:
        return delete(args, path)
    if args.dismiss:
        return dismiss(args.dismiss, path)
    with Ledger.open_readonly(path) as ledger:
        rows = ledger.candidates()
    if args.json:
        print(json.dumps([_entry(row) for row in rows], ensure_ascii=False))
    else:
        for row in rows:
            print(_line(row))
    print(
        f"syncd: {len(rows)} remote file{'s' if len(rows) != 1 else ''} kept as possibly "
        f"syncd's (not deleted); delete one with `syncd candidates --delete ID`",
        file=sys.stderr,
    )
    return 0


def _chosen(ledger: Ledger, ids: list[str]) -> tuple[list[CandidateRow], list[str]]:
    """The named ids that are kept candidates, and those that are not."""
    kept = {row.file_id: row for row in ledger.candidates()}
    return [kept[i] for i in ids if i in kept], [i for i in ids if i not in kept]


def _refuse(unknown: list[str]) -> None:
    for file_id in unknown:
        print(
            f"syncd: {file_id} is not a kept candidate of this ledger; syncd deletes only "
            "files it may have made (see `syncd candidates`)",
            file=sys.stderr,
        )


def delete(args: argparse.Namespace, path: Path) -> int:
    with Ledger.open(path) as ledger:
        chosen, unknown = _chosen(ledger, list(dict.fromkeys(args.delete)))
        _refuse(unknown)
        if args.dry_run:
            for row in chosen:
                print(f"would delete {_line(row)}")
            return 1 if unknown else 0
        failed = 0
        with open_remote(args, path.parent) as remote:
            for row in chosen:
                intent = ledger.begin_delete(row.path, row.file_id, now=time.time())
                try:
                    remote.delete(row.file_id)
                except FatalError:
                    raise
                except RemoteError as exc:  # the open intent is finished at the next sync
                    print(f"syncd: {row.file_id}: {exc}", file=sys.stderr)
                    failed += 1
                    continue
                ledger.complete_delete(intent.id, now=time.time())
                print(f"deleted {_line(row)}")
    return 1 if unknown or failed else 0


def dismiss(ids: list[str], path: Path) -> int:
    with Ledger.open(path) as ledger:
        chosen, unknown = _chosen(ledger, list(dict.fromkeys(ids)))
        _refuse(unknown)
        for row in chosen:
            ledger.dismiss_candidate(row.file_id)
            print(f"dismissed {_line(row)}")
    return 1 if unknown else 0


def _created(stamp: int | None) -> str:
    if stamp is None:
        return "?"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _entry(row: CandidateRow) -> dict[str, Any]:
    return {
        "id": row.file_id,
        "path": row.path,
        "filename": row.filename,
        "bytes": row.bytes,
        "created_at": row.created_at,
        "purpose": row.purpose,
        "reason": row.reason,
        "found_at": row.found_at,
    }


def _line(row: CandidateRow) -> str:
    return (
        f"{row.file_id:30} {row.bytes if row.bytes is not None else '?':>12} "
        f"{_created(row.created_at)} {printable(row.path)}  ({row.reason})"
    )
