"""The registry of this host's ledgers: entries written atomically, gone ledgers
skipped, and other ledgers read read-only without their locks."""

from __future__ import annotations

from pathlib import Path

from syncd.api import RemoteFile
from syncd.local.fingerprint import Fingerprint
from syncd.state.ledger import Ledger, read_claims
from syncd.state.registry import LedgerRegistry

FP = Fingerprint(5, 1, 1, "aa" * 32)


def upload(ledger: Ledger, path: str, now: float) -> int:
    return ledger.begin_upload(
        path, FP, filename=path, purpose="user_data", expires_after=None, replaces=None, now=now
    )


def test_every_ledger_opened_for_writing_is_registered_wherever_it_lives(
    tmp_path: Path,
) -> None:
    """A ledger under --state elsewhere is listed by the state home's registry, as is a
    ledger in the state home itself; registering twice keeps one entry."""
    home = LedgerRegistry(tmp_path / "home")
    elsewhere = tmp_path / "elsewhere" / "deep" / "a.db"
    with Ledger.open(elsewhere, registry=home):
        pass
    with Ledger.open(elsewhere, registry=home):
        pass
    with Ledger.open(tmp_path / "home" / "b.db", registry=None):  # made before the registry
        pass
    assert home.ledgers() == sorted([elsewhere.resolve(), (tmp_path / "home" / "b.db").resolve()])
    entries = list(home.directory.iterdir())
    assert len(entries) == 1 and entries[0].read_text().strip() == str(elsewhere.resolve())
    assert oct(home.directory.stat().st_mode & 0o777) == "0o700"


def test_entries_of_vanished_ledgers_are_skipped_and_pruned(tmp_path: Path) -> None:
    """A registered ledger that was deleted is not listed; the next registration removes
    its entry."""
    home = LedgerRegistry(tmp_path / "home")
    gone = tmp_path / "gone.db"
    with Ledger.open(gone, registry=home):
        pass
    gone.unlink()
    assert home.ledgers() == []
    with Ledger.open(tmp_path / "kept.db", registry=home):
        pass
    assert len(list(home.directory.iterdir())) == 1


def test_a_ledger_in_use_is_read_without_its_lock(tmp_path: Path) -> None:
    """While B's process holds its ledger, A reads B's file ids and open uploads."""
    home = LedgerRegistry(tmp_path / "home")
    with Ledger.open(tmp_path / "b" / "b.db", registry=home) as b:
        done = upload(b, "a.txt", 100.0)
        b.complete_upload(
            done, RemoteFile("file-b", "a.txt", 5, 100, "user_data"), stale=False, now=101.0
        )
        upload(b, "c.txt", 200.0)
        b.heartbeat(now=205.0)
        with Ledger.open(tmp_path / "a" / "a.db", registry=home) as a:
            claims = a.other_claims()
        assert "file-b" in claims.file_ids
        [inflight] = claims.uploads
        assert (inflight.filename, inflight.started_at, inflight.alive_at) == (
            "c.txt",
            200.0,
            205.0,
        )
        assert read_claims(tmp_path / "b" / "b.db", since=300.0).uploads == []


def test_an_unreadable_file_yields_no_claims(tmp_path: Path) -> None:
    """A registered path that is not a ledger is skipped, not an error."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00" * 4096)
    claims = read_claims(junk.resolve())
    assert (claims.file_ids, claims.doubtful, claims.uploads) == (set(), set(), [])
