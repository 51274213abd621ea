"""``syncd verify FOLDER``: check that the folder, its ledger and the remote agree.

By default every tracked local file is hashed and every tracked remote file whose
purpose the API serves is downloaded (streamed into a hash, never to disk) and compared
with the ledger, and every listed file's name, purpose and expiry too. Files of other
purposes (``user_data``, ``assistants``, ``fine-tune``, ``evals`` on the real API) are
checked by everything but their remote content, and the summary says how many and why.
``--quick`` compares local files by stat and remote files by the listing's size. Each
difference is one line on stdout (``KIND  PATH  DETAIL``), or a JSON document with
``--json``. Exit 0 only when everything agrees, 1 when anything differs, 2 for usage
errors. The include/exclude globs (options or the mirror's ``--config`` table) scope
the folder as they scope ``syncd sync``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from syncd.commands._display import TransferDisplay
from syncd.commands._options import add_state_argument, add_try_all_argument
from syncd.commands._remote import add_remote_arguments, open_remote
from syncd.config import DEFAULT_CONCURRENCY, MAX_CONCURRENCY, load_config, mirror_for_folder
from syncd.errors import ConfigError, FolderUnavailableError
from syncd.local.scan import Scanner
from syncd.paths import ledger_path
from syncd.restore.names import printable
from syncd.restore.undownloadable import Undownloadable, verify_note
from syncd.restore.verify import (
    Difference,
    check_remote_content,
    compare,
    content_targets,
    expected_remote_bytes,
    hash_local,
    local_targets,
    size_only,
    sort_differences,
)
from syncd.state.ledger import IntentKind, Ledger, LedgerRow, read_claims
from syncd.state.registry import LedgerRegistry
from syncd.state.vector_ledger import VectorLedger


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="check that the folder, the ledger and the remote agree",
        description="Compare the folder, its ledger and the remote: files not mirrored, "
        "changed or deleted locally, remote copies missing, of the wrong size or "
        "content, and extra remote copies. Exit 0 only when all agree.",
    )
    parser.add_argument("folder", type=Path, metavar="FOLDER", help="the mirrored folder")
    add_state_argument(parser)
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="take the folder's globs from this config"
    )
    parser.add_argument("--include", action="append", metavar="GLOB", help="as for sync")
    parser.add_argument("--exclude", action="append", metavar="GLOB", help="as for sync")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="compare by stat and listed size only: no hashing, no download",
    )
    parser.add_argument("--json", action="store_true", help="print the differences as JSON")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"downloads at once (default: {DEFAULT_CONCURRENCY})",
    )
    add_try_all_argument(parser)
    add_remote_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        raise ConfigError(f"--concurrency must be 1..{MAX_CONCURRENCY}")
    env = os.environ
    config = load_config(args.config, env) if args.config else None
    mirror = mirror_for_folder(config, args.folder, env).with_overrides(
        include=tuple(args.include) if args.include else None,
        exclude=tuple(args.exclude) if args.exclude else None,
        state_path=args.state.absolute() if args.state else None,
    )
    scanner = Scanner(mirror.folder, mirror.path_filter)
    try:
        scanner.check_root()
    except FolderUnavailableError as exc:
        folder = args.folder
        raise ConfigError(f"{exc}; to restore it: syncd pull {folder} --folder {folder}") from None
    ledger_file = ledger_path(mirror.folder, mirror.state_path, env)
    if not ledger_file.is_file():
        raise ConfigError(f"no ledger for {mirror.folder} at {ledger_file}; has it been synced?")
    with Ledger.open_readonly(ledger_file) as ledger:
        rows = ledger.rows()
        pending = {
            str(i.file_id): i.path
            for i in ledger.open_intents()
            if i.kind is IntentKind.DELETE and i.file_id
        }
        kept = {c.file_id for c in ledger.candidates(dismissed=True)}
        retained = retained_versions(ledger, rows)
    not_ours = kept | retained | others_files(ledger_file, env)
    display = TransferDisplay(sys.stderr, verb="verifying")
    scan = scanner.scan(rows if args.quick else {})
    with open_remote(args, ledger_file.parent, pool_size=args.concurrency + 2) as remote:
        listing = list(remote.list_files())
        found: list[Difference] = []
        local_hashes = None
        by_size: list[Undownloadable] = []
        if not args.quick:
            ask_all = args.try_all_purposes
            by_size = size_only(rows, listing, ask_all=ask_all)
            remote_todo = content_targets(rows, listing, ask_all=ask_all)
            local_bytes = sum(scan.files[p].size for p in local_targets(scan, rows))
            remote_bytes = sum(expected_remote_bytes(row) or 0 for _, row in remote_todo)
            display.start(len(remote_todo), local_bytes + remote_bytes)
            try:
                local_hashes, unreadable = hash_local(
                    mirror.folder,
                    scan,
                    rows,
                    concurrency=args.concurrency,
                    on_bytes=display.advanced,
                )
                found += unreadable
                content = check_remote_content(
                    remote,
                    rows,
                    listing,
                    concurrency=args.concurrency,
                    on_bytes=display.advanced,
                    on_file=display.file_done,
                    ask_all=ask_all,
                )
                found += content.differences
                by_size += content.refused
            finally:
                display.stop()
    found += compare(
        scan,
        rows,
        listing,
        path_filter=mirror.path_filter,
        pending_deletes=pending,
        local_hashes=local_hashes,
        not_ours=not_ours,
        check_metadata=not args.quick,
    )
    possibly = sum(1 for f in listing if f.id in kept)
    if possibly:
        print(
            f"syncd: {possibly} remote files kept as possibly syncd's, not counted "
            "(see `syncd candidates`)",
            file=sys.stderr,
        )
    serving = sum(1 for f in listing if f.id in retained)
    if serving:
        print(
            f"syncd: {serving} old versions kept in the vector store until their new versions "
            "are indexed, not counted (the daemon or the next sync deletes them then)",
            file=sys.stderr,
        )
    return report(
        sort_differences(found),
        args,
        checked=len(rows),
        remote_files=len(listing),
        by_size=sorted(by_size, key=lambda u: u.path),
    )


def retained_versions(ledger: Ledger, rows: Mapping[str, LedgerRow]) -> set[str]:
    """Old versions a vector store still serves: a changed file's previous remote copy
    stays attached (and stored) until its successor is indexed -- by design, no extra."""
    if not ledger.has_table("vector_attachments"):  # a ledger from before vector stores
        return set()
    current = {row.file_id for row in rows.values() if row.file_id}
    return {file_id for _, file_id in VectorLedger(ledger).attachments()} - current


def others_files(ledger_file: Path, env: Mapping[str, str]) -> set[str]:
    """The remote ids every other ledger of this host records or keeps."""
    me = ledger_file.resolve()
    ids: set[str] = set()
    for other in LedgerRegistry.from_env(env).ledgers():
        if other != me:
            claims = read_claims(other)
            ids |= claims.file_ids | claims.doubtful
    return ids


def report(
    found: list[Difference],
    args: argparse.Namespace,
    *,
    checked: int,
    remote_files: int,
    by_size: Sequence[Undownloadable] = (),
) -> int:
    """Differences on stdout (lines or JSON), a summary on stderr; the exit code."""
    if args.json:
        document = {
            "ok": not found,
            "folder": str(args.folder),
            "mode": "quick" if args.quick else "full",
            "tracked": checked,
            "remote_files": remote_files,
            "checked_by_size_only": [
                {"path": u.path, "purpose": u.purpose, "refusal": u.refusal} for u in by_size
            ],
            "differences": [d.to_json() for d in found],
        }
        print(json.dumps(document, ensure_ascii=False, indent=2))
    else:
        for difference in found:
            print(
                f"{difference.kind.value:17} {printable(difference.path)}  "
                f"{printable(difference.detail)}"
            )
    mode = "quick" if args.quick else "full"
    note = verify_note(by_size)
    if found:
        plural = "s" if len(found) != 1 else ""
        print(f"syncd: verify ({mode}): {len(found)} difference{plural}", file=sys.stderr)
        if note:
            print(f"syncd: {note}", file=sys.stderr)
        return 1
    print(
        f"syncd: verify ({mode}): folder, ledger and remote agree ({checked} tracked files"
        + (f"; {note})" if note else ")"),
        file=sys.stderr,
    )
    return 0
