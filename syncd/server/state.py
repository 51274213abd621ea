"""What every handler of `syncd serve` shares, kept on the Starlette app."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from syncd.server.faults import FaultInjector
from syncd.server.gate import RequestStats
from syncd.server.store import FileStore
from syncd.server.upload_store import UploadStore
from syncd.server.vector_store_db import VectorStoreDB


@dataclass
class ServerState:
    """The stores, the size limit, the download policy, and the test controls."""

    store: FileStore
    uploads: UploadStore
    vectors: VectorStoreDB
    max_bytes: int
    faults: FaultInjector
    stats: RequestStats
    allow_all_downloads: bool = False


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.syncd
    return state


async def drain_body(request: Request) -> None:
    """Read and drop the rest of the body before answering an error early: a client
    still sending a large body would otherwise see a reset instead of the answer."""
    async for _ in request.stream():
        pass
