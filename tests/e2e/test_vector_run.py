"""`syncd run` keeping a vector store exact: files dropped, changed and deleted reach the
store (indexing waited for by the daemon's schedule, not inside a pass), a config change
of attributes applied by SIGHUP in place, and kill -9 while an attach and while a detach
are in flight converging at the next start."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ServerFactory
from serverproc import ServerProcess
from test_run_support import DaemonProcess, wait_for, write
from vectorstore import assert_exact, by_path, route_counts, store_files, stores, write_config


def exact(server: ServerProcess, folder: Path) -> Callable[[], bool]:
    """A predicate: one store, and it (and the Files side) is exactly the folder."""

    def check() -> bool:
        found = stores(server)
        if len(found) != 1:
            return False
        try:
            assert_exact(server, folder, found[0]["id"])
        except AssertionError:
            return False
        return True

    return check


@pytest.fixture
def vserver(server_factory: ServerFactory) -> ServerProcess:
    return server_factory(extra_args=["--index-delay", "0.3"])


def test_daemon_keeps_the_store_exact(vserver: ServerProcess, tmp_path: Path) -> None:
    """New, changed and deleted files reach the store; an attributes change in the config
    is applied by SIGHUP with updates in place (no upload, no attach)."""
    folder, state = tmp_path / "data", tmp_path / "state" / "ledger.db"
    for i in range(3):
        write(folder, f"doc{i}.md", f"document {i}")
    config = write_config(tmp_path, folder, vector_store="docs", attributes={"team": "a"})
    daemon = DaemonProcess(
        vserver, None, state, "--config", str(config), log_path=tmp_path / "run.log"
    )
    with daemon:
        daemon.start_ready()
        wait_for(exact(vserver, folder), what="the first mirror in the store")
        write(folder, "new.md", "a new one")
        wait_for(exact(vserver, folder), what="the new file in the store")
        write(folder, "doc0.md", "document 0, edited")
        wait_for(exact(vserver, folder), what="the edited file's new version alone")
        (folder / "doc1.md").unlink()
        wait_for(exact(vserver, folder), what="the deleted file out of the store")
        before = route_counts(vserver)
        write_config(tmp_path, folder, vector_store="docs", attributes={"team": "b"})
        daemon.send(signal.SIGHUP)
        store_id = stores(vserver)[0]["id"]
        wait_for(
            lambda: {f["attributes"]["team"] for f in store_files(vserver, store_id)} == {"b"},
            what="the new attributes",
        )
        after = route_counts(vserver)
        for route in ("create", "vs_batch_create", "vs_file_create"):
            assert after[route] == before[route], route
        assert after["vs_file_update"] - before["vs_file_update"] == 3
        assert daemon.stop() == 0
    assert_exact(vserver, folder, store_id)


def in_flight(server: ServerProcess, route: str) -> bool:
    return any(r["route"] == route and r["finished"] is None for r in server.stats()["requests"])


@pytest.mark.slow
def test_kill9_while_attaching_and_while_detaching(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """SIGKILL while a batch attach is in flight (the server still carries it out), then
    while a detach is: each next start converges (one store, every file once, no orphan)."""
    server = server_factory(extra_args=["--index-delay", "0.3"])
    folder, state = tmp_path / "data", tmp_path / "state" / "ledger.db"
    for i in range(60):
        write(folder, f"d{i % 4}/f{i:03d}.md", f"file {i}")
    config = write_config(tmp_path, folder, vector_store="docs")
    daemon = DaemonProcess(
        server, None, state, "--config", str(config), log_path=tmp_path / "run.log"
    )
    with daemon:
        server.set_faults({"latency_ms": 1500, "routes": ["vs_batch_create"]})
        daemon.start()
        wait_for(lambda: in_flight(server, "vs_batch_create"), what="a batch attach in flight")
        daemon.stop(signal.SIGKILL)
        server.set_faults(None)
        daemon.start_ready()
        wait_for(exact(server, folder), what="the store after the first kill")
        assert daemon.stop() == 0
        for i in range(0, 60, 3):
            write(folder, f"d{i % 4}/f{i:03d}.md", f"file {i}, edited")
        server.set_faults({"latency_ms": 1500, "routes": ["vs_file_delete"]})
        daemon.start()
        wait_for(lambda: in_flight(server, "vs_file_delete"), what="a detach in flight")
        daemon.stop(signal.SIGKILL)
        server.set_faults(None)
        daemon.start_ready()
        wait_for(exact(server, folder), what="the store after the second kill")
        assert daemon.stop() == 0
    store_id = stores(server)[0]["id"]
    assert len(by_path(store_files(server, store_id))) == 60
