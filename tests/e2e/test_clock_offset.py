"""The server's clock is measured, not assumed: against a `syncd serve` whose clock runs
10 minutes ahead, a lost answer's own copy is still found and adopted, a same-name,
same-size file made seconds before the request is still left alone, and the offset
measured is kept in the ledger."""

from __future__ import annotations

import json
import time
from pathlib import Path

from serverproc import ServerProcess
from synccli import list_remote, run_syncd, upload_directly, write
from test_run_support import wait_for

from syncd.state.ledger import Ledger
from syncd.sync.server_clock import META_SERVER_CLOCK

AHEAD = 600


def test_a_server_ten_minutes_ahead(tmp_path: Path) -> None:
    """With the offset measured (Date headers, our uploads' created_at) the windows sit
    in the server's time: under the old fixed 120 s slack the own copy, stamped 600 s
    "later", would not be found, and the stranger's file would be in the window."""
    folder, state = tmp_path / "data", tmp_path / "state" / "ledger.db"
    write(folder, "a.txt", "AAAA")
    with ServerProcess(tmp_path / "store", extra_args=["--clock-offset", str(AHEAD)]) as server:
        stranger = upload_directly(server, "a.txt", b"XXXX")
        [made] = list_remote(server)
        # Let 4 s of the server's clock pass: more than a window's slack, far less than 120 s.
        wait_for(lambda: time.time() + AHEAD >= made["created_at"] + 4, what="4 s")
        server.set_faults({"lost_answer_rate": 1.0, "routes": ["create"]})
        result = run_syncd(server, "sync", folder, "--state", state, "--json")
        server.set_faults(None)
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)["reconciled"]
        assert summary["adopted"] == 1 and summary["kept_possibly_ours"] == 0
        with Ledger.open_readonly(state) as ledger:
            ours = ledger.rows()["a.txt"].file_id
            offset = json.loads(ledger.get_meta(META_SERVER_CLOCK) or "{}")
            assert ledger.candidates() == []
        assert {f["id"] for f in list_remote(server)} == {stranger, ours}
        assert offset["low"] <= AHEAD <= offset["high"] and offset["high"] - offset["low"] < 3
