"""One ledger, one remote: refuse to mirror a folder to a remote its ledger does not know.

The ledger's file ids only exist on the remote that made them. Mirrored against another
one, every file would be uploaded again there and, back on the first, uploaded once
more (the ledger now names the other remote's ids), leaving copies nothing will ever
delete. So a ledger records its remote (``meta`` key ``remote``: a
``RemoteIdentity``, never the key) and ``bind_remote`` runs before the first pass of
``syncd sync`` and ``syncd run``:

1. Nothing recorded (a new ledger, or one older than this check): record this remote.
2. Same URL, organization and project: the same remote, whatever the key (a rotated
   key is not refused; its new fingerprint is recorded and said).
3. Otherwise, if the ledger holds nothing that belongs to a remote (no mirrored file,
   no open intent, no upload in parts): nothing can be orphaned; record this remote.
4. Otherwise ask the remote: if it lists one of the files the ledger mirrored, it is
   the same account reached another way (a proxy, another port of ``syncd serve``):
   record it. Else refuse (``RemoteChangedError``, exit 2) with both ways forward:
   another ``--state`` (keep both mirrors), or ``--switch-remote``, which forgets the
   old remote's copies on purpose (they are left there untouched) and mirrors to the
   new remote from scratch.

See ``syncd.remote.identity`` for what makes two remotes the same.
"""

from __future__ import annotations

import time

from syncd.errors import RemoteChangedError
from syncd.remote.identity import RemoteIdentity
from syncd.remote.protocol import FilesRemote
from syncd.state.ledger import Ledger

META_REMOTE = "remote"
SWITCH_OPTION = "--switch-remote"


def recorded_remote(ledger: Ledger) -> RemoteIdentity | None:
    """The remote the ledger mirrors to, as recorded; None if none is."""
    return RemoteIdentity.from_json(ledger.get_meta(META_REMOTE))


def bind_remote(
    ledger: Ledger,
    remote: FilesRemote,
    current: RemoteIdentity,
    *,
    switch: bool = False,
    record: bool = True,
) -> str | None:
    """Check (and record) that ``ledger`` mirrors to ``current``; see the module docstring.

    Returns a line worth telling the user (a new key, a switch), or None. With
    ``record`` false (a dry run) the ledger is not written, and a switch is only said.
    Raises ``RemoteChangedError``; remote errors from the proof listing propagate.
    """
    recorded = recorded_remote(ledger)
    if recorded is None:
        _record(ledger, current, record)
        return None
    if recorded.same_account(current):
        if recorded.key_fingerprint == current.key_fingerprint:
            return None
        _record(ledger, current, record)
        if recorded.key_fingerprint and current.key_fingerprint:
            return f"the API key for {current.describe()} changed since the last run"
        return None
    if switch:
        if not record:
            return f"would switch from {recorded.describe()} to {current.describe()}"
        copies = ledger.forget_remote(f"switched to {current.url}", now=time.time())
        _record(ledger, current, record)
        return (
            f"switched from {recorded.describe()} to {current.describe()}: forgot the "
            f"{copies} copies there (left untouched), mirroring everything anew"
        )
    if _holds_nothing_remote(ledger) or _lists_our_files(ledger, remote):
        _record(ledger, current, record)
        return None
    tracked = ledger.tracked_count()
    raise RemoteChangedError(
        f"ledger {ledger.path} mirrors this folder to {recorded.describe()}, but this run "
        f"talks to {current.describe()}, which holds none of the {tracked} files "
        "mirrored there; mirroring here would leave those copies behind for good. "
        f"To mirror to both, give this run its own --state; to move the mirror here, "
        f"add {SWITCH_OPTION} (the ledger forgets the old copies, which stay where they are)"
    )


def _record(ledger: Ledger, identity: RemoteIdentity, record: bool) -> None:
    if record:
        ledger.set_meta(META_REMOTE, identity.to_json())


def _holds_nothing_remote(ledger: Ledger) -> bool:
    return (
        ledger.tracked_count() == 0 and not ledger.open_intents() and not ledger.multipart_uploads()
    )


def _lists_our_files(ledger: Ledger, remote: FilesRemote) -> bool:
    """Whether the remote holds one of the files the ledger mirrored (stops at the first)."""
    ours = ledger.known_file_ids()
    return any(remote_file.id in ours for remote_file in remote.list_files())
