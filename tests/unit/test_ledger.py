"""The ledger: file mode, schema, lock, rows, intents, dirty queue, passes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from syncd.api import RemoteFile
from syncd.errors import LedgerLockedError
from syncd.local.fingerprint import Fingerprint
from syncd.state.ledger import Ledger, backoff_seconds
from syncd.state.schema import SCHEMA_VERSION, TABLES

FP = Fingerprint(size=5, mtime_ns=111, inode=7, sha256="aa" * 32)


def remote(file_id: str, path: str = "a.txt") -> RemoteFile:
    return RemoteFile(id=file_id, filename=path, bytes=5, created_at=1000, purpose="user_data")


@pytest.fixture
def ledger(tmp_path: Path):
    led = Ledger.open(tmp_path / "state" / "x.db")
    yield led
    led.close()


def test_file_is_private_and_versioned(tmp_path: Path) -> None:
    """The ledger file is created 0600 and records the latest schema version."""
    path = tmp_path / "s" / "l.db"
    with Ledger.open(path) as led:
        assert led.schema_version() == SCHEMA_VERSION
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with Ledger.open(path) as led:  # reopening migrates nothing and keeps the version
        assert led.schema_version() == SCHEMA_VERSION


def test_second_open_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """A second process gets LedgerLockedError with the holder's pid."""
    path = tmp_path / "l.db"
    with Ledger.open(path):
        code = textwrap.dedent(f"""
            from pathlib import Path
            from syncd.state.ledger import Ledger
            from syncd.errors import LedgerLockedError
            try:
                Ledger.open(Path({str(path)!r}))
            except LedgerLockedError as exc:
                print(exc)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert f"pid {os.getpid()}" in out.stdout
        with pytest.raises(LedgerLockedError):
            Ledger.open(path)  # also within one process (flock is per open file)
    Ledger.open(path).close()  # released on close


def test_upload_completion_commits_row_and_delete_intent_together(ledger: Ledger) -> None:
    """Completing a replace writes the new row and an open delete intent for the old id."""
    first = ledger.begin_upload(
        "a.txt",
        FP,
        filename="a.txt",
        purpose="user_data",
        expires_after=None,
        replaces=None,
        now=10.0,
    )
    assert [i.id for i in ledger.open_intents()] == [first]
    assert ledger.complete_upload(first, remote("file-1"), stale=False, now=11.0) == []
    assert ledger.row("a.txt").file_id == "file-1"
    assert ledger.open_intents() == []

    fp2 = Fingerprint(size=6, mtime_ns=222, inode=7, sha256="bb" * 32)
    second = ledger.begin_upload(
        "a.txt",
        fp2,
        filename="a.txt",
        purpose="user_data",
        expires_after=None,
        replaces="file-1",
        now=12.0,
    )
    deletes = ledger.complete_upload(second, remote("file-2"), stale=False, now=13.0)
    assert [(d.kind, d.file_id, d.state) for d in deletes] == [("delete", "file-1", "open")]
    row = ledger.row("a.txt")
    assert (row.file_id, row.sha256, row.size) == ("file-2", "bb" * 32, 6)
    assert ledger.known_file_ids() == {"file-1", "file-2"}
    ledger.complete_delete(deletes[0].id, now=14.0)
    assert ledger.row("a.txt").file_id == "file-2"  # the delete of the old id keeps the row
    assert ledger.known_file_ids() == {"file-2"}


def test_stale_upload_records_no_hash(ledger: Ledger) -> None:
    """A file that changed during upload is recorded without a hash (so it is 'changed')."""
    intent = ledger.begin_upload(
        "a.txt",
        FP,
        filename="a.txt",
        purpose="user_data",
        expires_after=None,
        replaces=None,
        now=1.0,
    )
    ledger.complete_upload(intent, remote("file-1"), stale=True, now=2.0)
    row = ledger.row("a.txt")
    assert row.file_id == "file-1" and row.sha256 is None


def test_delete_completion_drops_the_row(ledger: Ledger) -> None:
    """Deleting the path's current remote file forgets the path."""
    intent = ledger.begin_upload(
        "a.txt",
        FP,
        filename="a.txt",
        purpose="user_data",
        expires_after=None,
        replaces=None,
        now=1.0,
    )
    ledger.complete_upload(intent, remote("file-1"), stale=False, now=2.0)
    delete = ledger.begin_delete("a.txt", "file-1", now=3.0)
    assert ledger.open_intents()[0].file_id == "file-1"
    ledger.complete_delete(delete.id, now=4.0)
    assert ledger.row("a.txt") is None
    assert ledger.tracked_count() == 0


def test_failures_back_off_and_remember_the_content(ledger: Ledger) -> None:
    """Retryable failures double the wait up to 1 h; permanent ones have no retry time."""
    now = 1000.0
    for attempt in range(1, 9):
        row = ledger.record_failure("b.txt", FP, "HTTP 503", permanent=False, now=now)
        assert row.attempts == attempt
        assert row.next_attempt_at == now + backoff_seconds(attempt)
    assert backoff_seconds(1) == 60 and backoff_seconds(2) == 120 and backoff_seconds(9) == 3600
    row = ledger.record_failure("c.jsonl", FP, "line 3 is not JSON", permanent=True, now=now)
    assert (row.error_kind, row.next_attempt_at) == ("permanent", None)
    assert row.failed_sha256 == FP.sha256
    assert row.file_id is None


def test_retry_after_longer_than_backoff_wins(ledger: Ledger) -> None:
    """A server's Retry-After longer than the backoff sets the next attempt."""
    row = ledger.record_failure("b", FP, "429", permanent=False, now=0.0, retry_after=500.0)
    assert row.next_attempt_at == 500.0


def test_rows_for_includes_paths_below_a_directory(ledger: Ledger) -> None:
    """rows_for('d') returns d/x and d/e/y but not 'dx'."""
    for path in ("d/x", "d/e/y", "dx", "other"):
        ledger.record_failure(path, FP, "r", permanent=True, now=0.0)
    assert set(ledger.rows_for(["d"])) == {"d/x", "d/e/y"}
    assert set(ledger.rows_for(["dx", "nope"])) == {"dx"}


def test_dirty_queue_keeps_paths_queued_again_during_a_pass(ledger: Ledger) -> None:
    """clear_dirty only removes entries queued before the pass began."""
    ledger.mark_dirty(["a", "b"], now=10.0)
    ledger.mark_dirty(["b"], now=20.0)
    ledger.clear_dirty(["a", "b"], queued_before=15.0)
    assert ledger.dirty_paths() == {"b": 20.0}


def test_passes_and_readonly_open(tmp_path: Path) -> None:
    """A reader sees the last pass while the owner holds the lock."""
    path = tmp_path / "l.db"
    with Ledger.open(path) as led:
        pass_id = led.start_pass(now=5.0)
        led.finish_pass(pass_id, result="ok", summary="{}", now=6.0)
        reader = Ledger.open_readonly(path)
        assert reader.last_pass()["result"] == "ok"
        reader.close()


def test_abandon_and_prune_intents(ledger: Ledger) -> None:
    """Abandoned intents are closed and later pruned; open ones are kept."""
    a = ledger.begin_upload(
        "a", FP, filename="a", purpose="user_data", expires_after=None, replaces=None, now=1.0
    )
    ledger.begin_upload(
        "b", FP, filename="b", purpose="user_data", expires_after=None, replaces=None, now=1.0
    )
    ledger.abandon_intent(a, "nothing stored", now=2.0)
    ledger.prune_intents(older_than=3.0)
    assert [i.path for i in ledger.open_intents()] == ["b"]
    assert ledger._query("SELECT count(*) AS n FROM intents")[0]["n"] == 1


def test_status_counts(ledger: Ledger) -> None:
    """status() counts mirrored, retrying (incl. stale), failed, queued and open intents."""
    for path, stale in (("ok1", False), ("ok2", False), ("stale", True)):
        i = ledger.begin_upload(
            path,
            FP,
            filename=path,
            purpose="user_data",
            expires_after=None,
            replaces=None,
            now=1.0,
        )
        ledger.complete_upload(i, remote(f"file-{path}", path), stale=stale, now=2.0)
    ledger.record_failure("retry", FP, "HTTP 503", permanent=False, now=3.0)
    ledger.record_failure("bad", FP, "line 1 is not JSON", permanent=True, now=3.0)
    ledger.mark_dirty(["queued", "bad"], now=4.0)
    ledger.begin_upload(
        "inflight",
        FP,
        filename="inflight",
        purpose="user_data",
        expires_after=None,
        replaces=None,
        now=5.0,
    )
    status = ledger.status()
    assert (status.mirrored, status.bytes) == (2, 15)
    assert (status.retrying, status.failed, status.queued, status.open_intents) == (2, 1, 1, 1)
    assert status.pending == 4
    assert [r.path for r in status.problem_rows] == ["bad", "retry"]


# The schema as syncd 0.1 (schema version 2) wrote it, before it was declared in
# syncd.state.schema: a ledger of a user who upgrades looks like this.
VERSION_2_SCRIPTS = (
    # 1: the first schema.
    """
    CREATE TABLE files (
        path TEXT PRIMARY KEY,
        size INTEGER, mtime_ns INTEGER, inode INTEGER, sha256 TEXT,
        purpose TEXT, file_id TEXT, remote_bytes INTEGER, remote_filename TEXT,
        uploaded_at REAL, expires_at INTEGER,
        last_error TEXT, error_kind TEXT, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        failed_sha256 TEXT, failed_size INTEGER, failed_mtime_ns INTEGER, failed_inode INTEGER
    );
    CREATE INDEX files_file_id ON files(file_id);
    CREATE TABLE intents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL, path TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open',
        filename TEXT, purpose TEXT, expires_after INTEGER,
        sha256 TEXT, size INTEGER, mtime_ns INTEGER, inode INTEGER,
        replaces TEXT, file_id TEXT,
        started_at REAL NOT NULL, finished_at REAL, outcome TEXT
    );
    CREATE INDEX intents_state ON intents(state);
    CREATE TABLE dirty (path TEXT PRIMARY KEY, queued_at REAL NOT NULL);
    CREATE TABLE passes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at REAL NOT NULL, finished_at REAL, result TEXT, summary TEXT
    );
    """,
    # 2: resumable uploads through the Uploads API (syncd.remote.multipart).
    """
    CREATE TABLE multipart_uploads (
        upload_id TEXT PRIMARY KEY,
        path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
        purpose TEXT NOT NULL, filename TEXT NOT NULL, expires_after INTEGER,
        part_size INTEGER NOT NULL, md5 TEXT,
        created_at REAL NOT NULL, expires_at REAL NOT NULL
    );
    CREATE INDEX multipart_uploads_path ON multipart_uploads(path);
    CREATE TABLE multipart_parts (
        upload_id TEXT NOT NULL REFERENCES multipart_uploads(upload_id),
        part_index INTEGER NOT NULL, part_id TEXT NOT NULL, bytes INTEGER NOT NULL,
        PRIMARY KEY (upload_id, part_index)
    );
    """,
)


def test_a_version_2_ledger_is_migrated_in_place(tmp_path: Path) -> None:
    """A ledger written by the older, hand-written schema opens, keeps its rows and
    indexes, and ends at the current version with every declared table and column."""
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    for script in VERSION_2_SCRIPTS:
        conn.executescript(script)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    conn.execute(
        "INSERT INTO files (path, sha256, file_id, attempts) VALUES ('a.txt', 'h', 'f-1', 0)"
    )
    conn.close()
    with Ledger.open(path) as led:
        assert led.schema_version() == SCHEMA_VERSION
        assert led.row("a.txt") is not None and led.row("a.txt").file_id == "f-1"
    conn = sqlite3.connect(path)
    for table, spec in TABLES.items():
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        assert set(spec.columns) <= columns, table
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"files_file_id", "intents_state", "multipart_uploads_path"} <= indexes
    assert not any(name.startswith("idx_") for name in indexes)  # no second copy of an index
    conn.close()


def test_a_newer_ledger_is_refused(tmp_path: Path) -> None:
    """A ledger written by a newer syncd is refused with one clear line, not migrated."""
    from syncd.errors import SyncdError

    path = tmp_path / "new.db"
    with Ledger.open(path) as led:
        led.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(SyncdError, match="newer syncd"):
        Ledger.open(path)


def test_a_version_3_ledger_with_a_crashed_upload_migrates_and_gets_an_end(
    tmp_path: Path,
) -> None:
    """A ledger of the previous version (no windows, no candidates) migrates in place,
    and the upload its crash left open ends at its start (it wrote no heartbeat)."""
    import sqlite3

    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    for script in VERSION_2_SCRIPTS:
        conn.executescript(script)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '3')")
    conn.execute(
        "INSERT INTO intents (kind, path, state, filename, size, started_at)"
        " VALUES ('upload', 'a.txt', 'open', 'a.txt', 5, 1000.0)"
    )
    conn.close()
    with Ledger.open_readonly(path) as old:  # `syncd status` before the first new sync
        assert old.status().unresolved == 0 and old.open_intents()[0].alive_at is None
    with Ledger.open(path) as led:
        assert led.schema_version() == SCHEMA_VERSION == 6
        [intent] = led.open_intents()
        assert (intent.alive_at, intent.gave_up_at, intent.time_limit) == (1000.0, None, None)
        assert led.candidates() == [] and led.status().unresolved == 0


def test_an_upload_open_at_a_crash_ends_at_the_last_heartbeat(tmp_path: Path) -> None:
    """The next open seals an open upload with the heartbeat; one whose client gave up
    keeps that moment instead."""
    path = tmp_path / "x.db"
    with Ledger.open(path) as led:
        crashed = led.begin_upload(
            "a.txt",
            FP,
            filename="a.txt",
            purpose="user_data",
            expires_after=None,
            replaces=None,
            now=10.0,
            time_limit=600.0,
        )
        lost = led.begin_upload(
            "b.txt",
            FP,
            filename="b.txt",
            purpose="user_data",
            expires_after=None,
            replaces=None,
            now=11.0,
        )
        led.record_gave_up(lost, now=12.5)
        led.heartbeat(now=14.0)
    with Ledger.open(path) as led:
        intents = {i.id: i for i in led.open_intents()}
        assert (intents[crashed].alive_at, intents[crashed].time_limit) == (14.0, 600.0)
        assert (intents[lost].alive_at, intents[lost].gave_up_at) == (None, 12.5)
        led.heartbeat(now=99.0)
    with Ledger.open(path) as led:  # sealed once: a later heartbeat does not move it
        assert {i.id: i.alive_at for i in led.open_intents()}[crashed] == 14.0


def test_candidates_are_kept_dismissed_and_go_with_their_delete(ledger: Ledger) -> None:
    """Kept candidates are known ids, counted by status; a dismissed one stays known but
    is not counted; deleting one (a delete intent completed) forgets it."""
    from syncd.state.ledger import CandidateRow

    rows = [
        CandidateRow(f"file-{n}", "a.txt", "a.txt", 5, 100, "user_data", "why", 1.0) for n in (1, 2)
    ]
    ledger.record_candidates(rows)
    ledger.record_candidates(rows[:1])  # again: no second row
    assert {"file-1", "file-2"} <= ledger.known_file_ids()
    assert ledger.status().unresolved == 2
    ledger.dismiss_candidate("file-2")
    assert [c.file_id for c in ledger.candidates()] == ["file-1"]
    assert "file-2" in ledger.known_file_ids() and ledger.status().unresolved == 1
    delete = ledger.begin_delete("a.txt", "file-1", now=2.0)
    ledger.complete_delete(delete.id, now=3.0)
    assert ledger.candidates(dismissed=True)[0].file_id == "file-2"
    assert len(ledger.candidates(dismissed=True)) == 1


def test_forgetting_the_remote_forgets_its_candidates_and_not_stored_uploads(
    ledger: Ledger,
) -> None:
    """--switch-remote: kept candidates and uploads closed as not stored belong to the old
    remote; the late-copy sweep must not judge the new remote's files by them."""
    from syncd.state.ledger import NOT_STORED, CandidateRow

    ledger.record_candidates([CandidateRow("file-1", "a.txt", "a.txt", 5, 100, "u", "r", 1.0)])
    intent = ledger.begin_upload(
        "a.txt",
        FP,
        filename="a.txt",
        purpose="user_data",
        expires_after=None,
        replaces=None,
        now=1.0,
    )
    ledger.abandon_intent(intent, NOT_STORED, now=2.0)
    ledger.forget_remote("switched remote", now=3.0)
    assert ledger.candidates(dismissed=True) == []
    assert ledger.closed_uploads(NOT_STORED, since=0.0) == []
