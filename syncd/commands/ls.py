"""``syncd ls``: the remote listing, marking which files a ledger owns.

Columns: file id, bytes, created (UTC), purpose, owner mark, filename, and the local
path the file mirrors. The mark is ``*`` for a file the ledger tracks (the current copy
of a path), ``~`` for an old copy the ledger still intends to delete, and blank for a
file syncd did not make for this ledger (it never touches those). The ledger is the one
of ``--folder``, the one ``--state`` names, or every ledger in the state directory.
Everything the server sent (ids, purposes, filenames) and every local path is shown
with control characters escaped (``printable``), so a name cannot move the cursor or
recolour the terminal. ``--json`` prints a list of objects with the same fields
(``owned``: true, ``"pending-delete"`` or false), escaped as JSON escapes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd.api import UPLOAD_PURPOSES, RemoteFile
from syncd.commands._options import add_state_argument
from syncd.commands._remote import add_remote_arguments, open_remote
from syncd.errors import ConfigError
from syncd.paths import LEDGER_SUFFIX, find_ledgers, ledger_path
from syncd.restore.names import printable
from syncd.restore.pull import state_dir
from syncd.state.ledger import IntentKind, Ledger


@dataclass(frozen=True)
class Owner:
    """Who holds a remote id: which ledger and path, and whether it is the current copy."""

    ledger: Path
    path: str
    current: bool


def owners(ledger_files: list[Path]) -> dict[str, Owner]:
    """Remote id -> owner, over every given ledger (read-only, without their locks)."""
    found: dict[str, Owner] = {}
    for ledger_file in ledger_files:
        with Ledger.open_readonly(ledger_file) as ledger:
            for intent in ledger.open_intents():
                if intent.kind is IntentKind.DELETE and intent.file_id:
                    found[intent.file_id] = Owner(ledger_file, intent.path, current=False)
            for path, row in ledger.rows().items():
                if row.file_id:
                    found[row.file_id] = Owner(ledger_file, path, current=True)
    return found


def choose_ledgers(args: argparse.Namespace, env: Mapping[str, str]) -> list[Path]:
    if args.folder is not None:
        path = ledger_path(args.folder, args.state, env)
        if not path.is_file():
            raise ConfigError(f"no ledger for {args.folder} at {path}")
        return [path]
    state = args.state
    if state is not None and state.name.endswith(LEDGER_SUFFIX) and not state.is_file():
        raise ConfigError(f"no ledger at {state}")
    return find_ledgers(args.state, env)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ls",
        help="list the remote files, marking the ones syncd mirrors",
        description="List the remote files: id, bytes, created, purpose, filename, and "
        "for files a ledger owns the local path each mirrors (* current, ~ old copy "
        "still to be deleted).",
    )
    parser.add_argument("--purpose", choices=UPLOAD_PURPOSES, help="only files of this purpose")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--folder", type=Path, metavar="FOLDER", help="mark the files of this folder's ledger"
    )
    add_state_argument(parser)
    add_remote_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    env = os.environ
    ledger_files = choose_ledgers(args, env)
    owned = owners(ledger_files)
    remote_state = ledger_files[0].parent if len(ledger_files) == 1 else state_dir(args.state, env)
    with open_remote(args, remote_state) as remote:
        listing = list(remote.list_files(purpose=args.purpose))
    several = len(ledger_files) > 1
    if args.json:
        print(json.dumps([_entry(f, owned.get(f.id)) for f in listing], ensure_ascii=False))
    else:
        for remote_file in listing:
            print(_line(remote_file, owned.get(remote_file.id), several))
    mine = sum(1 for f in listing if f.id in owned)
    print(
        f"syncd: {len(listing)} remote files, {mine} owned by "
        f"{len(ledger_files)} ledger{'s' if len(ledger_files) != 1 else ''}",
        file=sys.stderr,
    )
    return 0


def _created(remote_file: RemoteFile) -> str:
    return datetime.fromtimestamp(remote_file.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _entry(remote_file: RemoteFile, owner: Owner | None) -> dict[str, Any]:
    return {
        "id": remote_file.id,
        "bytes": remote_file.bytes,
        "created_at": remote_file.created_at,
        "purpose": remote_file.purpose,
        "filename": remote_file.filename,
        "owned": (True if owner.current else "pending-delete") if owner else False,
        "path": owner.path if owner else None,
        "ledger": str(owner.ledger) if owner else None,
    }


def _line(remote_file: RemoteFile, owner: Owner | None, several: bool) -> str:
    mark = " " if owner is None else ("*" if owner.current else "~")
    where = ""
    if owner is not None:
        prefix = f"{printable(owner.ledger.stem)}:" if several else ""
        where = f"  -> {prefix}{printable(owner.path)}"
    return (
        f"{printable(remote_file.id):30} {remote_file.bytes:>12} {_created(remote_file)} "
        f"{printable(remote_file.purpose):10} {mark} {printable(remote_file.filename)}{where}"
    )
