"""``syncd status [FOLDER]``: what the ledger says about a mirror, without touching it.

Reads the ledger read-only (it works while ``syncd sync`` or ``syncd run`` holds it):
mirrored / pending / failed counts, bytes, the last pass, whether its uploads were (or
are being) paced under the server's rate limit and at what rate (``syncd.sync.pacing_log``
records that), and each failed file with its reason; for a mirror with a vector store, per
store its files completed / in progress / failed, its usage and expiry as last seen, and
each failed attachment with its reason; how many remote files are kept as possibly
syncd's (not deleted: see ``syncd candidates``); deletes the mass-delete guard refused,
with the exact command that approves them; delayed deletes (``delete_delay``) with their
time left. Without FOLDER, the state directory must hold exactly one ledger. Paths and
reasons (which may quote a server) are shown with control characters escaped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from syncd.commands._options import add_state_argument
from syncd.commands._vector_views import vector_status_json, vector_status_lines
from syncd.config import load_config, mirror_for_folder
from syncd.durations import format_duration
from syncd.errors import SyncdError
from syncd.paths import default_state_dir, find_ledgers, ledger_path
from syncd.remote.protocol import PacingStatus
from syncd.restore.names import printable
from syncd.state.deletes import PendingDelete, Refusal, RefusalState
from syncd.state.ledger import META_FOLDER, ErrorKind, Ledger, LedgerStatus
from syncd.sync.binding import recorded_remote
from syncd.sync.pacing_log import META_PACING


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show what is mirrored, pending and failed",
        description="Show a mirror's state from its ledger: counts, bytes, the last pass "
        "and every failed file with its reason.",
    )
    parser.add_argument("folder", nargs="?", type=Path, metavar="FOLDER")
    add_state_argument(parser)
    parser.add_argument("--config", type=Path, metavar="FILE", help="a syncd config file")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.set_defaults(func=run)


def find_ledger(args: argparse.Namespace) -> Path:
    """The ledger the arguments name (see the module docstring)."""
    env = os.environ
    state = args.state.absolute() if args.state else None
    if args.folder is not None or args.config is not None:
        config = load_config(args.config, env) if args.config else None
        mirror = mirror_for_folder(config, args.folder, env)
        path = ledger_path(mirror.folder, state or mirror.state_path, env)
        if not path.exists():
            raise SyncdError(f"no ledger for {mirror.folder} at {path}; run `syncd sync` first")
        return path
    found = find_ledgers(state, env)
    where = state or default_state_dir(env)
    if not found:
        raise SyncdError(f"no ledger in {where}; run `syncd sync FOLDER` first")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise SyncdError(f"{where} holds several ledgers ({names}); name the FOLDER")
    return found[0]


def run(args: argparse.Namespace) -> int:
    path = find_ledger(args)
    ledger = Ledger.open_readonly(path)
    try:
        folder = ledger.get_meta(META_FOLDER)
        status = ledger.status()
        remote = recorded_remote(ledger)
        pacing = ledger.get_meta(META_PACING)
        stores = vector_status_json(ledger)
        refusal = ledger.pending_refusal()
        pending = ledger.pending_deletes()
    finally:
        ledger.close()
    data = status_json(status, folder, path)
    data["remote"] = remote.describe() if remote else None
    data["pacing"] = pacing_json(pacing, status.last_pass)
    if stores:
        data["vector_stores"] = stores
    data["refusal"] = refusal_json(refusal, folder, path)
    data["delayed_deletes"] = delayed_json(pending)
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        print_status(data)
    return 0


def _when(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def retry_in(next_attempt_at: float | None, now: float) -> str:
    """When a retryable failure is tried again, in words: ``retrying in 4 min 10 s``."""
    if next_attempt_at is None or next_attempt_at <= now:
        return "retrying at the next pass"
    seconds = math.ceil(next_attempt_at - now)
    if seconds < 60:
        return f"retrying in {seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"retrying in {minutes} min {seconds} s" if seconds else f"retrying in {minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"retrying in {hours} h {minutes} min"


def status_json(
    status: LedgerStatus, folder: str | None, path: Path, now: float | None = None
) -> dict[str, Any]:
    now = time.time() if now is None else now
    last = status.last_pass
    last_pass = None
    if last is not None:
        summary = json.loads(last["summary"]) if last.get("summary") else {}
        last_pass = {
            "started": _when(last["started_at"]),
            "finished": _when(last["finished_at"]),
            "result": last["result"] or "running or interrupted",
            "counts": summary.get("counts", {}),
        }
    return {
        "folder": folder,
        "ledger": str(path),
        "mirrored": status.mirrored,
        "bytes": status.bytes,
        "pending": status.pending,
        "retrying": status.retrying,
        "queued": status.queued,
        "unfinished_actions": status.open_intents,
        "failed": status.failed,
        "possibly_ours": status.unresolved,
        "last_pass": last_pass,
        "problems": [
            {
                "path": row.path,
                "reason": row.last_error,
                "kind": row.error_kind,
                "attempts": row.attempts,
                "next_attempt": _when(row.next_attempt_at),
                "retry_in_seconds": None
                if row.error_kind != ErrorKind.RETRYABLE or row.next_attempt_at is None
                else max(0.0, round(row.next_attempt_at - now, 1)),
                "retry": None
                if row.error_kind != ErrorKind.RETRYABLE
                else retry_in(row.next_attempt_at, now),
            }
            for row in status.problem_rows
        ],
    }


def pacing_json(raw: str | None, last: dict[str, Any] | None) -> dict[str, Any] | None:
    """The pacing the ledger recorded for its last (or running) pass; None if that pass
    paced nothing or the record is from an older pass (or unreadable)."""
    if raw is None or last is None:
        return None
    try:
        document = json.loads(raw)
        routes = [PacingStatus.from_json(r) for r in document["routes"]]
        same_pass = float(document["pass_started_at"]) == float(last["started_at"])
    except (ValueError, KeyError, TypeError):
        return None
    if not same_pass or not routes:
        return None
    running = last.get("finished_at") is None and not document.get("finished")
    return {
        "running": running,
        "updated": _when(document.get("updated_at")),
        "routes": [
            {
                **route.to_json(),
                "text": route.describe(),
                "since": _when(route.paced_since),
            }
            for route in routes
        ],
    }


def pacing_lines(pacing: dict[str, Any] | None) -> list[str]:
    """``pacing:   uploads paced at 600/min (server limit) since 12:00:01; ...``."""
    if not pacing:
        return []
    lines = []
    for route in pacing["routes"]:
        figures = (
            f"{route['delayed_requests']:,} waited {route['delayed_seconds']:.0f} s in all, "
            f"{route['rate_limited']:,} answered 429"
        )
        if pacing["running"] and route["since"]:
            lines.append(f"pacing:    {route['text']} since {route['since']} ({figures})")
        else:
            lines.append(f"pacing:    last pass: {route['text']} ({figures})")
    return lines


def approve_command_for(folder: str | None, ledger: Path) -> str:
    """The approve command for the ledger at ``ledger`` (``--state`` unless the default)."""
    command = f"syncd approve-deletes {shlex.quote(folder or '.')}"
    if ledger.parent.absolute() != default_state_dir(os.environ).absolute():
        command += f" --state {shlex.quote(str(ledger.parent))}"
    return command


def refusal_json(
    refusal: Refusal | None, folder: str | None, ledger: Path
) -> dict[str, Any] | None:
    if refusal is None:
        return None
    return {
        "id": refusal.id,
        "at": _when(refusal.at),
        "deletes": len(refusal.copies),
        "message": refusal.message,
        "state": refusal.state,
        "approved_by": refusal.approved_by,
        "approve": f"{approve_command_for(folder, ledger)} --max {len(refusal.copies)}",
        "paths": [path for path, _ in refusal.copies],
    }


def delayed_json(pending: dict[str, PendingDelete], now: float | None = None) -> list[Any]:
    now = time.time() if now is None else now
    return [
        {
            "path": p.path,
            "deleted_locally": _when(p.since),
            "due": _when(p.due_at),
            "due_in_seconds": max(0.0, round(p.due_at - now, 1)),
            "time_left": format_duration(max(0.0, p.due_at - now)),
        }
        for p in sorted(pending.values(), key=lambda p: (p.due_at, p.path))
    ]


def print_status(data: dict[str, Any]) -> None:
    out = sys.stdout
    print(f"folder:    {printable(data['folder'] or '(unknown)')}", file=out)
    print(f"ledger:    {printable(data['ledger'])}", file=out)
    if data.get("remote"):
        print(f"remote:    {printable(data['remote'])}", file=out)
    print(f"mirrored:  {data['mirrored']} files, {data['bytes'] / 1_000_000:.1f} MB", file=out)
    print(
        f"pending:   {data['pending']} (retrying {data['retrying']}, queued {data['queued']}, "
        f"unfinished actions {data['unfinished_actions']})",
        file=out,
    )
    print(f"failed:    {data['failed']}", file=out)
    if data["possibly_ours"]:
        print(
            f"possibly ours: {data['possibly_ours']} remote files kept, not deleted "
            "(syncd could not prove they are its own; `syncd candidates` lists them)",
            file=out,
        )
    last = data["last_pass"]
    if last is None:
        print("last pass: none yet", file=out)
    else:
        counts = ", ".join(f"{n} {k}" for k, n in last["counts"].items()) or "no changes"
        print(
            f"last pass: {last['finished'] or last['started']}: {last['result']}; {counts}",
            file=out,
        )
    for line in pacing_lines(data.get("pacing")):
        print(line, file=out)
    for problem in data["problems"]:
        if problem["kind"] == ErrorKind.PERMANENT:
            note = "not retried until the file changes"
        else:
            note = f"attempt {problem['attempts']}, {problem['retry']}"
        reason = printable(problem["reason"] or "")
        print(f"  {printable(problem['path'])}: {reason} ({note})", file=out)
    for line in vector_status_lines(data.get("vector_stores", [])):
        print(line, file=out)
    refusal = data.get("refusal")
    if refusal and refusal["state"] == RefusalState.APPROVED:
        print(
            f"refused:   {refusal['deletes']} deletes of {refusal['at']}, approved by "
            f"{printable(refusal['approved_by'] or '')}; carried out by the daemon's next pass",
            file=out,
        )
    elif refusal:
        print(f"refused:   a pass at {refusal['at']}: {printable(refusal['message'])}", file=out)
        print(f"  approve:  {printable(refusal['approve'])}", file=out)
    delayed = data.get("delayed_deletes") or []
    if delayed:
        print(f"delayed:   {len(delayed)} deletes (delete_delay)", file=out)
        for item in delayed:
            print(f"  {printable(item['path'])}: deleted remotely in {item['time_left']}", file=out)
