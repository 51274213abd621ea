"""`kill -9` of `syncd run` at random moments (seeded) of a large first mirror, several
times over; the next start finishes it, and the remote is then exactly the folder: one
file per path with its bytes, no duplicate, and no orphan (every remote id is in the
ledger)."""

from __future__ import annotations

import random
import signal
from collections import Counter
from pathlib import Path

import pytest
from serverproc import ServerProcess
from test_run_support import DaemonProcess, list_remote, local_contents, wait_for, write

from syncd.state.ledger import Ledger

FILES = 600
KILLS = 4
SEED = 9
LATENCY_MS = 15  # so that a pass takes a few seconds and every kill lands inside it


def creates(server: ServerProcess) -> int:
    return int(server.stats()["counts"].get("create", 0))


@pytest.mark.slow
def test_kill9_during_first_mirror_then_restart_is_exact(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Four SIGKILLs mid-mirror, then a clean start: remote == folder, no dup, no orphan."""
    rng = random.Random(SEED)
    folder, ledger_file = tmp_path / "data", tmp_path / "state" / "ledger.db"
    for i in range(FILES):
        write(folder, f"d{i % 7}/f{i:04d}.txt", f"file {i}\n" + "x" * rng.randint(0, 200))
    server.set_faults({"latency_ms": LATENCY_MS, "seed": SEED})
    daemon = DaemonProcess(server, folder, ledger_file, debounce=0.2, log_path=tmp_path / "run.log")
    kills = []
    with daemon:
        for _ in range(KILLS):
            daemon.start()
            # A seeded moment: after this many more creates reached the server.
            target = creates(server) + rng.randint(10, 110)
            wait_for(lambda t=target: creates(server) >= t, what=f"{target} creates")
            daemon.stop(signal.SIGKILL)
            assert daemon.proc is not None and daemon.proc.returncode == -signal.SIGKILL
            kills.append(creates(server))
        assert kills[-1] < FILES, "the mirror finished before the last kill"
        server.set_faults(None)
        daemon.start_ready()
        assert daemon.stop() == 0
    log = (tmp_path / "run.log").read_text()
    assert log.count('"event": "reconciling"') >= 2, "no kill left an upload half-done"
    listing = list_remote(server)
    by_name = Counter(f["filename"] for f in listing)
    assert [n for n, c in by_name.items() if c > 1] == [], "duplicate remote files"
    local = local_contents(folder)
    assert set(by_name) == set(local)
    with Ledger.open_readonly(ledger_file) as ledger:
        rows = ledger.rows()
        assert ledger.open_intents() == []
    assert {f["id"] for f in listing} == {row.file_id for row in rows.values()}, "orphans"
    assert {f["filename"]: f["id"] for f in listing} == {p: r.file_id for p, r in rows.items()}
    sizes = {f["filename"]: f["bytes"] for f in listing}
    assert sizes == {name: len(content) for name, content in local.items()}
    sample = rng.sample(sorted(listing, key=lambda f: f["filename"]), 60)
    contents = {f["filename"]: server_content(server, f["id"]) for f in sample}
    assert contents == {name: local[name] for name in contents}


def server_content(server: ServerProcess, file_id: str) -> bytes:
    return server.stored_content(file_id)  # from the store: the API refuses user_data
