"""The options every command that talks to a remote shares, and opening that remote.

``--local`` starts an embedded ``syncd serve`` on a free loopback port with its store in
the state directory; ``--base-url`` (or ``OPENAI_BASE_URL``) names a real server. Either
way the command gets one ``HttpFilesRemote`` over HTTP, shared by all its workers (and so
one ``RetryGate``).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.pacing import pacing_for
from syncd.remote.protocol import FilesRemote
from syncd.remote.settings import RemoteSettings, check_base_url, remote_settings_from_env

LOCAL_SERVER_DIR = "local-server"


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
    uploads_per_minute: Sequence[int | None] = (),
) -> Iterator[FilesRemote]:
    """The remote the options name, open for the ``with`` block, closed after it.

    ``uploads_per_minute`` are the ``max_uploads_per_minute`` of the mirrors that will
    share it (``syncd.remote.pacing.pacing_for`` combines them: the smallest wins).

    With ``--local`` the embedded server gets a fresh random key for this run (so no
    other local process can write to it) and prints where its store lives on stderr.
    Raises ConfigError for a bad base URL or a missing key.
    """
    if getattr(args, "local", False):
        from syncd.server.embedded import EmbeddedServer  # the server stack only when needed

        data_dir = state_dir / LOCAL_SERVER_DIR
        key = secrets.token_urlsafe(32)
        # Asked to read every purpose back (pull/verify --try-all-purposes), the embedded
        # server serves them: it is the user's own store. Otherwise it refuses like the API.
        serve_all = bool(getattr(args, "try_all_purposes", False))
        with EmbeddedServer(data_dir, api_key=key, allow_all_downloads=serve_all) as server:
            print(f"syncd: local server at {server.base_url}, store in {data_dir}", file=sys.stderr)
            base_url = check_base_url(server.base_url, "--local")
            settings = RemoteSettings(
                base_url=base_url, api_key=key, pacing=pacing_for(base_url, uploads_per_minute)
            )
            with HttpFilesRemote(settings, pool_size=pool_size) as remote:
                yield remote
        return
    settings = remote_settings_from_env(os.environ, base_url=getattr(args, "base_url", None))
    settings = settings.replace(pacing=pacing_for(settings.base_url, uploads_per_minute))
    with HttpFilesRemote(settings, pool_size=pool_size) as remote:
        yield remote
