"""The options every command that talks to a remote shares, and opening that remote.

``--local`` starts an embedded ``syncd serve`` on a free loopback port with its store in
the state directory, or uses the one another command of that state directory runs
(``syncd.commands._local``); ``--base-url`` (or ``OPENAI_BASE_URL``) names a real
server. Either way the command gets one ``HttpFilesRemote`` over HTTP, shared by all its
workers (and so one ``RetryGate``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from syncd.commands._local import LOCAL_SERVER_DIR, local_remote
from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.identity import RemoteIdentity, identity_of, local_identity
from syncd.remote.pacing import pacing_for
from syncd.remote.protocol import FilesRemote
from syncd.remote.settings import remote_settings_from_env


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the mutually exclusive ``--local`` and ``--base-url URL`` options."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--local",
        action="store_true",
        help="start an embedded `syncd serve` on a free loopback port, "
        f"with its store in the state directory ({LOCAL_SERVER_DIR}/); no account needed",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="the Files API to talk to (default: $OPENAI_BASE_URL, else "
        "https://api.openai.com/v1); the key comes from OPENAI_API_KEY, never from argv",
    )


@contextmanager
def open_remote(
    args: argparse.Namespace,
    state_dir: Path,
    *,
    pool_size: int = 16,
    reuse_running: bool = True,
    uploads_per_minute: Sequence[int | None] = (),
) -> Iterator[FilesRemote]:
    """The remote the options name, open for the ``with`` block, closed after it.

    ``uploads_per_minute`` are the ``max_uploads_per_minute`` of the mirrors that will
    share it (``syncd.remote.pacing.pacing_for`` combines them: the smallest wins).

    With ``--local``: the embedded server another command of this state directory runs
    (``reuse_running``), else a new one with a fresh random key, published for the
    others while the block runs (``syncd.commands._local``); it says on stderr where its
    store lives. Asked to read every purpose back (pull/verify ``--try-all-purposes``), a
    new embedded server serves them: it is the user's own store; otherwise it refuses
    like the API. Raises ConfigError for a bad base URL or a missing key.
    """
    if getattr(args, "local", False):
        with local_remote(
            state_dir,
            pool_size=pool_size,
            reuse_running=reuse_running,
            allow_all_downloads=bool(getattr(args, "try_all_purposes", False)),
            uploads_per_minute=uploads_per_minute,
        ) as remote:
            yield remote
        return
    settings = remote_settings_from_env(os.environ, base_url=getattr(args, "base_url", None))
    settings = settings.replace(pacing=pacing_for(settings.base_url, uploads_per_minute))
    with HttpFilesRemote(settings, pool_size=pool_size) as remote:
        yield remote


def remote_identity(args: argparse.Namespace, state_dir: Path) -> RemoteIdentity:
    """Which remote the options name, as a ledger records it (``syncd.remote.identity``)."""
    if getattr(args, "local", False):
        return local_identity(state_dir / LOCAL_SERVER_DIR)
    return identity_of(
        remote_settings_from_env(os.environ, base_url=getattr(args, "base_url", None))
    )
