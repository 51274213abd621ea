"""`syncd sync` sends large files through the Uploads API in several parts (a small part
size set for the test), resumes after kill -9 with only the missing parts, starts over
when the upload expired, cancels abandoned uploads, and survives a lost complete."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest
from serverproc import ServerProcess
from synccli import list_remote, local_files, remote_files, run_syncd, sync_json

PART = 4096
PARTS = 12
CONTENT = os.urandom(PART * (PARTS - 1) + 1000)  # 12 parts, the last one short
ENV = {"SYNCD_MULTIPART_THRESHOLD": "10000", "SYNCD_PART_SIZE": str(PART)}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "big.bin").write_bytes(CONTENT)
    (path / "small.txt").write_bytes(b"small files still go through POST /files")
    return path


def sync(server: ServerProcess, folder: Path, state: Path, **env: str):  # type: ignore[no-untyped-def]
    return run_syncd(
        server, "sync", folder, "--state", state, "--purpose", "assistants", env={**ENV, **env}
    )


def counts(server: ServerProcess) -> dict[str, int]:
    found = server.stats()["counts"]
    names = ("create", "upload_create", "upload_part", "upload_complete", "upload_cancel")
    return {name: found.get(name, 0) for name in names}


def ledger_uploads(state: Path) -> list[tuple[str, int]]:
    """(upload id, parts recorded) of every upload the ledger remembers."""
    (ledger,) = state.glob("*.db")
    with sqlite3.connect(ledger) as db:
        return list(
            db.execute(
                "SELECT u.upload_id, count(p.part_index) FROM multipart_uploads u "
                "LEFT JOIN multipart_parts p USING (upload_id) GROUP BY u.upload_id"
            )
        )


def server_upload_status(server: ServerProcess, upload_id: str) -> str:
    with sqlite3.connect(server.data_dir / "files.db") as db:
        return str(
            db.execute("SELECT status FROM uploads WHERE id = ?", (upload_id,)).fetchone()[0]
        )


def crash_after_parts(server: ServerProcess, folder: Path, state: Path, parts: int) -> int:
    """Run sync until SIGKILL after the ``parts``th recorded part; returns parts recorded."""
    crashed = sync(server, folder, state, SYNCD_CRASH_AT=f"multipart.part_sent:{parts}")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    ((_, recorded),) = ledger_uploads(state)
    assert parts <= recorded < PARTS
    return int(recorded)


def test_large_file_goes_in_parts_with_identical_bytes(
    server: ServerProcess, folder: Path, tmp_path: Path
) -> None:
    """The big file is one upload of 12 parts and one complete; small files use POST /files."""
    state = tmp_path / "state"
    result = sync(server, folder, state)
    assert result.returncode == 0, result.stderr
    assert counts(server) == {
        "create": 1,
        "upload_create": 1,
        "upload_part": PARTS,
        "upload_complete": 1,
        "upload_cancel": 0,
    }
    assert remote_files(server) == local_files(folder)
    assert ledger_uploads(state) == []
    server.reset_stats()
    again = sync_json(server, folder, state, "--purpose", "assistants")
    assert again["_exit"] == 0 and again["counts"] == {}
    assert counts(server)["upload_part"] == 0


def test_resume_after_kill_sends_only_the_missing_parts(
    server: ServerProcess, folder: Path, tmp_path: Path
) -> None:
    """kill -9 after 5 parts: the next run makes no new upload and sends only the rest."""
    state = tmp_path / "state"
    recorded = crash_after_parts(server, folder, state, 5)
    server.reset_stats()
    after = sync(server, folder, state)
    assert after.returncode == 0, after.stderr
    found = counts(server)
    assert found["upload_create"] == 0
    assert found["upload_part"] == PARTS - recorded
    assert found["upload_complete"] == 1
    assert remote_files(server) == local_files(folder)
    assert len(list_remote(server)) == 2 and ledger_uploads(state) == []


def test_an_expired_upload_starts_over_cleanly(
    server: ServerProcess, folder: Path, tmp_path: Path
) -> None:
    """The server expired the upload while syncd was down: a new upload sends every part."""
    state = tmp_path / "state"
    crash_after_parts(server, folder, state, 3)
    ((old_id, _),) = ledger_uploads(state)
    server.stop()
    with sqlite3.connect(server.data_dir / "files.db") as db:  # an hour later, server-side
        db.execute(
            "UPDATE uploads SET created_at = created_at - 3601, expires_at = expires_at - 3601"
        )
    server.restart()
    server.reset_stats()
    after = sync(server, folder, state)
    assert after.returncode == 0, after.stderr
    found = counts(server)
    assert found["upload_create"] == 1 and found["upload_complete"] == 1
    assert PARTS < found["upload_part"] <= PARTS + 4  # refused ones in flight, then all anew
    assert server_upload_status(server, old_id) == "expired"
    assert remote_files(server) == local_files(folder) and ledger_uploads(state) == []


@pytest.mark.parametrize("change", ["edited", "deleted"])
def test_an_abandoned_upload_is_cancelled(
    server: ServerProcess, folder: Path, tmp_path: Path, change: str
) -> None:
    """The file changed or went away after the kill: its old upload is cancelled."""
    state = tmp_path / "state"
    crash_after_parts(server, folder, state, 2)
    ((old_id, _),) = ledger_uploads(state)
    big = folder / "sub" / "big.bin"
    if change == "edited":
        big.write_bytes(CONTENT[::-1] + b"more")
    else:
        big.unlink()
    after = sync(server, folder, state)
    assert after.returncode == 0, after.stderr
    assert server_upload_status(server, old_id) == "cancelled"
    assert remote_files(server) == local_files(folder) and ledger_uploads(state) == []


def test_lost_complete_answer_leaves_exactly_one_file(
    server: ServerProcess, folder: Path, tmp_path: Path
) -> None:
    """complete's answer is lost: reconcile by listing adopts the file; no duplicate."""
    state = tmp_path / "state"
    server.set_faults({"lost_answer_rate": 1.0, "routes": ["upload_complete"]})
    result = sync(server, folder, state)
    assert result.returncode == 0, result.stderr
    server.set_faults(None)
    assert counts(server)["upload_complete"] == 1
    assert remote_files(server) == local_files(folder)
    assert len(list_remote(server)) == 2 and ledger_uploads(state) == []
    server.reset_stats()
    again = sync(server, folder, state)
    assert again.returncode == 0 and counts(server)["upload_part"] == 0


def test_large_file_with_a_purpose_the_uploads_api_refuses(
    server: ServerProcess, folder: Path, tmp_path: Path
) -> None:
    """Over the POST /files limit with purpose user_data: one clear line, others go on;
    with assistants the same file goes through the Uploads API whatever the threshold."""
    limit = {"SYNCD_MAX_FILE_BYTES": "20000", "SYNCD_MULTIPART_THRESHOLD": "999999999"}
    refused = run_syncd(server, "sync", folder, "--state", tmp_path / "s1", env=limit)
    assert refused.returncode == 1
    (line,) = [x for x in refused.stderr.splitlines() if x.startswith("syncd: failed: sub/big")]
    assert "over the 20000-byte limit per file for purpose user_data" in line
    assert "Uploads API" in line
    assert set(remote_files(server)) == {"small.txt"}
    accepted = run_syncd(
        server, "sync", folder, "--state", tmp_path / "s2", "--purpose", "vision", env=limit
    )
    assert accepted.returncode == 0, accepted.stderr
    assert counts(server)["upload_complete"] == 1
