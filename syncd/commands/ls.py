"""``syncd ls``: the remote listing, marking which files a ledger owns.

Columns: file id, bytes, created (UTC), purpose, owner mark, filename, and the local
path the file mirrors. The mark is ``*`` for a file the ledger tracks (the current copy
of a path), ``~`` for an old copy the ledger still intends to delete, ``?`` for a file
that may be syncd's but could not be proven so ("possibly ours, not deleted": see
``syncd candidates``), and blank for a file syncd did not make for this ledger (it never
touches those). The ledger is the one of ``--folder``, the one ``--state`` names, or
every ledger of this host (the state directory's and those registered in it).
Filenames are shown with control characters escaped. ``--json`` prints a list of
objects with the same fields (``owned``: true, ``"pending-delete"``,
``"possibly-ours"`` or false).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from syncd.api import UPLOAD_PURPOSES, RemoteFile
from syncd.commands._options import add_state_argument
from syncd.commands._remote import add_remote_arguments, open_remote
from syncd.errors import ConfigError, SyncdError
from syncd.paths import LEDGER_SUFFIX, find_ledgers, ledger_path
from syncd.restore.names import printable
from syncd.restore.pull import state_dir
from syncd.state.ledger import IntentKind, Ledger
from syncd.state.registry import LedgerRegistry


class Held(StrEnum):
    """How a ledger holds a remote id (``owned`` in the JSON)."""

    CURRENT = "current"  # the current copy of a path
    PENDING_DELETE = "pending-delete"  # an old copy still to be deleted
    POSSIBLY_OURS = "possibly-ours"  # kept: possibly syncd's, not deleted


MARKS = {Held.CURRENT: "*", Held.PENDING_DELETE: "~", Held.POSSIBLY_OURS: "?"}


@dataclass(frozen=True)
class Owner:
    """Who holds a remote id: which ledger and path, and how."""

    ledger: Path
    path: str
    held: Held

    @property
    def current(self) -> bool:
        return self.held is Held.CURRENT


def owners(ledger_files: list[Path]) -> dict[str, Owner]:
    """Remote id -> owner, over every given ledger (read-only, without their locks); a
    ledger's claim beats another's doubt."""
    found: dict[str, Owner] = {}
    ledgers: list[Ledger] = []
    readable: list[Path] = []
    for ledger_file in ledger_files:
        try:
            ledgers.append(Ledger.open_readonly(ledger_file))
        except SyncdError as exc:
            if len(ledger_files) == 1:
                raise
            print(f"syncd: skipping {ledger_file}: {exc}", file=sys.stderr)
            continue
        readable.append(ledger_file)
    ledger_files = readable
    try:
        for ledger_file, ledger in zip(ledger_files, ledgers, strict=True):
            for candidate in ledger.candidates():
                found[candidate.file_id] = Owner(ledger_file, candidate.path, Held.POSSIBLY_OURS)
        for ledger_file, ledger in zip(ledger_files, ledgers, strict=True):
            for intent in ledger.open_intents():
                if intent.kind is IntentKind.DELETE and intent.file_id:
                    found[intent.file_id] = Owner(ledger_file, intent.path, Held.PENDING_DELETE)
            for path, row in ledger.rows().items():
                if row.file_id:
                    found[row.file_id] = Owner(ledger_file, path, Held.CURRENT)
    finally:
        for ledger in ledgers:
            ledger.close()
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
    found = find_ledgers(args.state, env)
    if state is None:  # every ledger of this host, wherever its --state put it
        found = sorted({p.resolve() for p in found} | set(LedgerRegistry.from_env(env).ledgers()))
    return found


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
    mine = sum(1 for f in listing if f.id in owned and owned[f.id].held is not Held.POSSIBLY_OURS)
    doubt = sum(1 for f in listing if f.id in owned and owned[f.id].held is Held.POSSIBLY_OURS)
    print(
        f"syncd: {len(listing)} remote files, {mine} owned by "
        f"{len(ledger_files)} ledger{'s' if len(ledger_files) != 1 else ''}"
        + (f", {doubt} possibly ours (kept, not deleted)" if doubt else ""),
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
        "owned": (True if owner.current else owner.held.value) if owner else False,
        "path": owner.path if owner else None,
        "ledger": str(owner.ledger) if owner else None,
    }


def _line(remote_file: RemoteFile, owner: Owner | None, several: bool) -> str:
    mark = " " if owner is None else MARKS[owner.held]
    where = ""
    if owner is not None:
        prefix = f"{owner.ledger.stem}:" if several else ""
        where = f"  -> {prefix}{printable(owner.path)}"
        if owner.held is Held.POSSIBLY_OURS:
            where += " (possibly ours, not deleted)"
    return (
        f"{remote_file.id:30} {remote_file.bytes:>12} {_created(remote_file)} "
        f"{remote_file.purpose:10} {mark} {printable(remote_file.filename)}{where}"
    )
