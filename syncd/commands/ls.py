"""``syncd ls``: the remote listing, marking which files a ledger owns.

Columns: file id, bytes, created (UTC), purpose, owner mark, filename, and the local
path the file mirrors. The mark is ``*`` for a file the ledger tracks (the current copy
of a path), ``~`` for an old copy the ledger still intends to delete, ``?`` for a file
that may be syncd's but could not be proven so ("possibly ours, not deleted": see
``syncd candidates``), and blank for a file syncd did not make for this ledger (it never
touches those). The ledger is the one of ``--folder``, the one ``--state`` names, or
every ledger of this host (the state directory's and those registered in it).
Everything the server sent (ids, purposes, filenames) and every local path is shown
with control characters escaped (``printable``), so a name cannot move the cursor or
recolour the terminal. ``--json`` prints a list of objects with the same fields
(``owned``: true, ``"pending-delete"``, ``"possibly-ours"`` or false), escaped as JSON
escapes.

``--vector-store [ID]`` lists a vector store's files instead (the ledger's store, or ID):
file id, status, usage, ``*`` for a file this ledger attached (by its owner tag) with
the path it mirrors, ``+`` for one another syncd ledger attached, blank for files
someone else attached -- which syncd never detaches or updates. Its ids and statuses
(the server's) are escaped as the listing's are.
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
from syncd.commands._vector_views import StoreEntry, classify, entry_json, entry_line
from syncd.errors import ConfigError, NotFoundError, SyncdError
from syncd.paths import LEDGER_SUFFIX, find_ledgers, ledger_path
from syncd.remote.vector_stores import SupportsVectorStores
from syncd.restore.names import printable
from syncd.restore.pull import state_dir
from syncd.state.ledger import IntentKind, Ledger
from syncd.state.registry import LedgerRegistry
from syncd.state.vector_ledger import VectorLedger


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
            for attached in VectorLedger(ledger).attachments().values():
                # An old version a vector store still serves: deleted once its successor
                # is indexed (a current copy's row, below, wins).
                found.setdefault(
                    attached.file_id, Owner(ledger_file, attached.path, Held.PENDING_DELETE)
                )
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
    parser.add_argument(
        "--vector-store",
        nargs="?",
        const="",
        metavar="ID",
        help="list the files of a vector store instead (the ledger's store, or ID): "
        "* attached by this ledger, + by another syncd ledger, blank by someone else",
    )
    add_state_argument(parser)
    add_remote_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    env = os.environ
    ledger_files = choose_ledgers(args, env)
    if args.vector_store is not None:
        return run_vector_store(args, ledger_files, env)
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
        prefix = f"{printable(owner.ledger.stem)}:" if several else ""
        where = f"  -> {prefix}{printable(owner.path)}"
        if owner.held is Held.POSSIBLY_OURS:
            where += " (possibly ours, not deleted)"
    return (
        f"{printable(remote_file.id):30} {remote_file.bytes:>12} {_created(remote_file)} "
        f"{printable(remote_file.purpose):10} {mark} {printable(remote_file.filename)}{where}"
    )


def run_vector_store(
    args: argparse.Namespace, ledger_files: list[Path], env: Mapping[str, str]
) -> int:
    """``syncd ls --vector-store [ID]``: a store's files and who attached each."""
    owners: dict[str, Path] = {}
    stores: set[str] = set()
    for ledger_file in ledger_files:
        with Ledger.open_readonly(ledger_file) as ledger:
            vl = VectorLedger(ledger)
            tag = vl.known_owner()
            if tag:
                owners[tag] = ledger_file
            stores |= {row.store_id for row in vl.stores() if row.store_id}
    if args.vector_store:
        stores = {args.vector_store}
    if not stores:
        raise ConfigError("no vector store recorded in the ledger; name one: --vector-store ID")
    remote_state = ledger_files[0].parent if len(ledger_files) == 1 else state_dir(args.state, env)
    with open_remote(args, remote_state) as remote:
        if not isinstance(remote, SupportsVectorStores):
            raise ConfigError("this remote does not offer the Vector Stores API")
        api = remote.vector_stores()
        listings: dict[str, list[StoreEntry]] = {}
        for store_id in sorted(stores):
            try:
                listings[store_id] = classify(list(api.list_files(store_id)), owners)
            except NotFoundError:
                raise SyncdError(f"vector store {store_id} does not exist") from None
    if args.json:
        print(
            json.dumps(
                {s: [entry_json(e) for e in entries] for s, entries in listings.items()},
                ensure_ascii=False,
            )
        )
    for store_id, entries in listings.items():
        if not args.json:
            for entry in entries:
                print(entry_line(entry))
        mine = sum(1 for e in entries if e.owner == "this")
        print(
            f"syncd: {printable(store_id)}: {len(entries)} files, {mine} attached by "
            f"{'this ledger' if len(ledger_files) == 1 else 'these ledgers'}, "
            f"{len(entries) - mine} by others (syncd leaves those alone)",
            file=sys.stderr,
        )
    return 0
