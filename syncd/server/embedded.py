"""Running the Files API server: in the foreground (`syncd serve`) or in a thread (`--local`).

``serve_forever`` is what ``syncd serve`` runs. ``EmbeddedServer`` starts the same server
on a free loopback port in a background thread, for commands given ``--local``; they
then talk to it over HTTP like to any remote::

    with EmbeddedServer(state_dir / "local-server") as server:
        client = FilesClient(base_url=server.base_url, api_key=server.api_key or "local")

Both bind the listening socket themselves before uvicorn starts, so the real port is
known at once (``port=0`` picks a free one) and no request can race the start-up. What
the server does beyond its store (key, faults, download policy, rate limits, timeouts
and connection limit) is one ``ServeOptions``; uvicorn's configuration is
``syncd.server.connection.build_config``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import uvicorn

from syncd.api import MAX_FILE_BYTES
from syncd.errors import SyncdError
from syncd.server.app import create_app
from syncd.server.connection import ServerLimits, build_config
from syncd.server.faults import FaultConfig, FaultInjector
from syncd.server.gate import ROUTE_NAMES
from syncd.server.ratelimit import RequestRate, parse_rate_limits
from syncd.server.store import FileStore
from syncd.server.vector_store_db import DEFAULT_INDEX_DELAY, DEFAULT_INDEX_WORKERS, Indexer

START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0


def default_data_dir() -> Path:
    """``$XDG_STATE_HOME/syncd/serve``, else ``~/.local/state/syncd/serve``."""
    state_home = os.environ.get("XDG_STATE_HOME")
    base = Path(state_home) if state_home else Path.home() / ".local" / "state"
    return base / "syncd" / "serve"


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket (uvicorn listens on it); SyncdError if the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # asyncio only sets TCP_NODELAY on sockets it creates itself; without it every
    # keep-alive answer waits ~40 ms behind a delayed ACK. Accepted sockets inherit it.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SyncdError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _NotifyingServer(uvicorn.Server):
    """uvicorn.Server that calls ``on_ready`` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_ready()


@dataclass(frozen=True)
class ServeOptions:
    """How a server behaves, beyond its store and address (every field has a default)."""

    api_key: str | None = None
    max_bytes: int = MAX_FILE_BYTES
    faults: FaultConfig = field(default_factory=FaultConfig)
    allow_all_downloads: bool = False
    rate_limits: Mapping[str, RequestRate] = field(default_factory=dict)
    limits: ServerLimits = field(default_factory=ServerLimits)
    index_delay: float = DEFAULT_INDEX_DELAY  # seconds a vector store file takes to index
    index_workers: int = DEFAULT_INDEX_WORKERS  # files indexed at once


def build_server(
    store: FileStore, options: ServeOptions, on_ready: Callable[[], None]
) -> uvicorn.Server:
    """A single-worker uvicorn server for the app over ``store``; quiet (no access log)."""
    app = create_app(
        store,
        api_key=options.api_key,
        max_bytes=options.max_bytes,
        faults=FaultInjector(options.faults),
        allow_all_downloads=options.allow_all_downloads,
        rate_limits=options.rate_limits,
        body_timeouts=options.limits.body_timeouts(),
        indexer=Indexer(store, delay=options.index_delay, workers=options.index_workers),
    )
    return _NotifyingServer(build_config(app, options.limits), on_ready)


def serve_forever(
    *,
    host: str,
    port: int,
    data_dir: Path,
    options: ServeOptions,
    on_ready: Callable[[str], None],
) -> None:
    """Serve until SIGINT/SIGTERM; ``on_ready(base_url)`` once connections are accepted."""
    store = FileStore(data_dir)
    try:
        sock = bind_socket(host, port)
        real_port = sock.getsockname()[1]
        base_url = f"http://{url_host(host)}:{real_port}/v1"
        server = build_server(store, options, on_ready=lambda: on_ready(base_url))
        server.run(sockets=[sock])
    finally:
        store.close()


class EmbeddedServer:
    """``syncd serve`` in a background thread on a free loopback port (for ``--local``).

    ``api_key=None`` accepts any key (a key must still be sent). Downloads of the
    purposes the real API refuses are refused unless ``allow_all_downloads``;
    ``rate_limits`` takes ``--rate-limit`` values (``["600/min", "list=100/s"]``).
    ``stop()`` (or leaving the ``with`` block) shuts it down and releases the store; it
    is idempotent.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        api_key: str | None = None,
        max_bytes: int = MAX_FILE_BYTES,
        faults: FaultConfig | None = None,
        host: str = "127.0.0.1",
        allow_all_downloads: bool = False,
        rate_limits: Iterable[str] = (),
        limits: ServerLimits | None = None,
        index_delay: float = DEFAULT_INDEX_DELAY,
    ) -> None:
        self.data_dir = data_dir
        self.api_key = api_key
        self.host = host
        self._options = ServeOptions(
            api_key=api_key,
            max_bytes=max_bytes,
            faults=faults or FaultConfig(),
            allow_all_downloads=allow_all_downloads,
            rate_limits=parse_rate_limits(rate_limits, ROUTE_NAMES),
            limits=limits or ServerLimits(),
            index_delay=index_delay,
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._store: FileStore | None = None
        self._error: BaseException | None = None
        self.base_url = ""

    def start(self) -> EmbeddedServer:
        if self._thread is not None:
            return self
        store = FileStore(self.data_dir)
        ready = threading.Event()
        try:
            sock = bind_socket(self.host, 0)
        except BaseException:
            store.close()
            raise
        port = sock.getsockname()[1]
        server = build_server(store, self._options, on_ready=ready.set)

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # reported by start()/stop(), not lost
                self._error = exc
            finally:
                sock.close()
                ready.set()

        thread = threading.Thread(target=run, name="syncd-embedded-server", daemon=True)
        self._store, self._server, self._thread = store, server, thread
        thread.start()
        if not ready.wait(START_TIMEOUT_SECONDS) or not server.started:
            self.stop()
            raise SyncdError(f"the embedded server did not start: {self._error or 'timeout'}")
        self.base_url = f"http://{url_host(self.host)}:{port}/v1"
        return self

    def stop(self) -> None:
        server, thread, store = self._server, self._thread, self._store
        self._server = self._thread = self._store = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(STOP_TIMEOUT_SECONDS)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(STOP_TIMEOUT_SECONDS)
        if store is not None:
            store.close()

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
