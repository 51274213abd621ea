"""``--local``: the embedded ``syncd serve``, and reaching one another command runs.

A command given ``--local`` starts an ``EmbeddedServer`` on a free loopback port, with
its store in ``<state>/local-server`` and a random key, and *publishes* it: the file
``<state>/local-server.json`` (mode 0600, in the 0700 state directory) holds its URL,
key and pid for as long as it runs, and is removed when it stops cleanly. Another
command given ``--local`` with the same state directory (``syncd ls --local`` beside
``syncd run --local``) then talks to that server instead of failing on its store lock.

The file is trusted only when all of this holds, and else ignored (a stale file never
makes a command fail; the next server to start replaces it):

- it is a regular file, opened without following a symbolic link, owned by this user
  and readable by nobody else;
- its URL is ``http://`` on a loopback address;
- the store's lock is held (the server that wrote it may have died by ``kill -9``: then
  nobody holds the lock), and the server answers a one-file listing with the key.

The embedded server's info lines (one per request) are debug lines here: shown with
``--verbose`` only. ``syncd run`` never borrows a server (it would stop working when the
borrowed one's command ends): it starts its own, or reports the store's lock as before.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from syncd.errors import LockHeldError, RemoteError
from syncd.log import demote_to_debug
from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.pacing import pacing_for
from syncd.remote.settings import RemoteSettings, check_base_url
from syncd.state.lock import FileLock

LOCAL_SERVER_DIR = "local-server"
ENDPOINT_FILE = "local-server.json"
STORE_LOCK = ".lock"  # syncd.server.store's lock file in the store directory
PROBE_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class LocalEndpoint:
    """Where a running ``--local`` server answers, and its key (never printed)."""

    url: str
    key: str
    pid: int

    def settings(self) -> RemoteSettings:
        return RemoteSettings(base_url=check_base_url(self.url, "--local"), api_key=self.key)


@contextlib.contextmanager
def local_remote(
    state_dir: Path,
    *,
    pool_size: int,
    reuse_running: bool,
    allow_all_downloads: bool = False,
    uploads_per_minute: Sequence[int | None] = (),
) -> Iterator[HttpFilesRemote]:
    """The ``--local`` remote of ``state_dir``: a running one (``reuse_running``; it keeps
    its own download rules), else a new embedded server (serving every purpose when
    ``allow_all_downloads``), published for the others while the block runs."""
    data_dir = state_dir / LOCAL_SERVER_DIR
    endpoint_file = state_dir / ENDPOINT_FILE
    running = find_running(state_dir) if reuse_running else None
    if running is not None:
        print(
            f"syncd: using the local server of pid {running.pid} at {running.url}, "
            f"store in {data_dir}",
            file=sys.stderr,
        )
        settings = running.settings()
        settings = settings.replace(pacing=pacing_for(settings.base_url, uploads_per_minute))
        with HttpFilesRemote(settings, pool_size=pool_size) as remote:
            yield remote
        return
    from syncd.server.embedded import EmbeddedServer  # the server stack only when needed

    # Its line per request would bury the command's own output (a progress bar, the
    # daemon's line per file): only with --verbose. Warnings and errors still show.
    demote_to_debug("syncd.server")
    key = secrets.token_urlsafe(32)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with EmbeddedServer(data_dir, api_key=key, allow_all_downloads=allow_all_downloads) as server:
        mine = LocalEndpoint(server.base_url, key, os.getpid())
        published = publish(endpoint_file, mine)
        print(
            f"syncd: local server at {server.base_url}, store in {data_dir}"
            + (f" (URL and key for other commands: {endpoint_file})" if published else ""),
            file=sys.stderr,
        )
        try:
            settings = mine.settings()
            settings = settings.replace(pacing=pacing_for(settings.base_url, uploads_per_minute))
            with HttpFilesRemote(settings, pool_size=pool_size) as remote:
                yield remote
        finally:
            if published:
                withdraw(endpoint_file, mine)


def publish(path: Path, endpoint: LocalEndpoint) -> bool:
    """Write ``path`` atomically, mode 0600, never through a link; False if it cannot be."""
    text = json.dumps({"url": endpoint.url, "key": endpoint.key, "pid": endpoint.pid})
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
        temp.replace(path)  # replaces a link in the way, never writes through it
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        return False
    return True


def withdraw(path: Path, endpoint: LocalEndpoint) -> None:
    """Remove ``path`` if it still names ``endpoint`` (not a newer server's file)."""
    if read_endpoint(path) == endpoint:
        with contextlib.suppress(OSError):
            path.unlink()


def read_endpoint(path: Path) -> LocalEndpoint | None:
    """What ``path`` says, if it may be trusted (see the module docstring), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # missing, or a symbolic link (ELOOP)
        return None
    with os.fdopen(fd, encoding="utf-8") as file:
        st = os.fstat(file.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        try:
            data = json.loads(file.read(4096))
            endpoint = LocalEndpoint(str(data["url"]), str(data["key"]), int(data["pid"]))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None
    return endpoint if _is_loopback_http(endpoint.url) and endpoint.key else None


def find_running(state_dir: Path) -> LocalEndpoint | None:
    """The published server of ``state_dir`` if it is alive and answers, else None."""
    endpoint = read_endpoint(state_dir / ENDPOINT_FILE)
    if endpoint is None or not _store_in_use(state_dir / LOCAL_SERVER_DIR):
        return None
    settings = endpoint.settings().replace(
        max_attempts=1, connect_timeout=PROBE_TIMEOUT_SECONDS, timeout=PROBE_TIMEOUT_SECONDS
    )
    try:
        with HttpFilesRemote(settings, pool_size=1, page_size=1) as probe:
            next(iter(probe.list_files()), None)
    except RemoteError:
        return None
    return endpoint


def _store_in_use(data_dir: Path) -> bool:
    """Whether a server holds the store's lock (a crashed one holds nothing)."""
    if not (data_dir / STORE_LOCK).is_file():
        return False
    try:
        FileLock(data_dir / STORE_LOCK).release()
    except LockHeldError:
        return True
    except OSError:
        return False
    return False


def _is_loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    try:
        return parts.scheme == "http" and ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return False
