"""Reconciliation rules against an in-memory Files remote (no HTTP): what is adopted,
what is deleted as a provable copy of ours, what is kept as possibly ours, and what is
never touched."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from syncd import testing
from syncd.errors import FatalError
from syncd.local.fingerprint import Fingerprint
from syncd.state.ledger import Ledger
from syncd.state.registry import LedgerRegistry
from syncd.sync.ownership import Doubt, Offset
from syncd.sync.reconcile import NOT_STORED, Reconciler, filename_matches

T0 = 1_700_000_000.0
EXACT = Offset(0.0, 0.0)  # the server's clock is measured to be ours
SHA = "ab" * 32


class MemoryRemote(testing.MemoryRemote):
    """The shared in-memory remote (downloads refused for purposes the API will not
    serve), noting every download reconciliation asked for, refused ones too."""

    def __init__(self) -> None:
        super().__init__()
        self.downloaded: list[str] = []

    def download(self, file_id: str, out: BinaryIO, expected_bytes: int | None = None) -> int:
        self.downloaded.append(file_id)
        return super().download(file_id, out, expected_bytes)


@pytest.fixture
def home(tmp_path: Path) -> LedgerRegistry:
    return LedgerRegistry(tmp_path / "home")


@pytest.fixture
def ledger(tmp_path: Path, home: LedgerRegistry) -> Iterator[Ledger]:
    led = Ledger.open(tmp_path / "l.db", registry=home)
    yield led
    led.close()


def intend(
    ledger: Ledger,
    path: str,
    size: int,
    at: float = T0,
    replaces: str | None = None,
    *,
    sha: str = SHA,
    purpose: str = "user_data",
    gave_up: float | None = 2.0,
) -> int:
    """An upload intent whose answer was lost ``gave_up`` seconds after it started."""
    fp = Fingerprint(size, 1, 1, sha)
    intent = ledger.begin_upload(
        path, fp, filename=path, purpose=purpose, expires_after=None, replaces=replaces, now=at
    )
    if gave_up is not None:
        ledger.record_gave_up(intent, now=at + gave_up)
    return intent


def reconciler(ledger: Ledger, remote: MemoryRemote) -> Reconciler:
    return Reconciler(ledger, remote, clock=lambda: T0 + 10, offset=lambda: EXACT)  # type: ignore[arg-type]


def settle(ledger: Ledger, remote: MemoryRemote):  # type: ignore[no-untyped-def]
    return reconciler(ledger, remote).settle(ledger.open_intents())


def test_one_copy_in_the_window_is_adopted(ledger: Ledger) -> None:
    """A lost answer whose request stored one file: that file is adopted, nothing kept."""
    remote = MemoryRemote()
    intend(ledger, "d/a.txt", 5)
    stored = remote.add("d/a.txt", 5, T0 + 1)
    report = settle(ledger, remote)
    assert report.adopted == {"d/a.txt": stored} and report.kept == []
    assert ledger.row("d/a.txt").file_id == stored and ledger.open_intents() == []


def test_two_copies_in_one_window_are_kept_and_nothing_adopted(ledger: Ledger) -> None:
    """Two files in one request's window (a replayed request, or ours and a stranger's
    same-name, same-size upload): neither adopted nor deleted, both kept as candidates,
    and the path is uploaded again."""
    remote = MemoryRemote()
    intend(ledger, "d/a.txt", 5)
    first = remote.add("d/a.txt", 5, T0 + 1)
    second = remote.add("d/a.txt", 5, T0 + 2)
    report = settle(ledger, remote)
    assert report.adopted == {} and report.not_stored == ["d/a.txt"]
    assert remote.deleted == [] and sorted(report.kept) == sorted([first, second])
    kept = {c.file_id: c for c in ledger.candidates()}
    assert set(kept) == {first, second} and kept[first].reason == Doubt.SEVERAL.value
    assert kept[first].path == "d/a.txt" and ledger.row("d/a.txt") is None
    assert first in ledger.known_file_ids()  # never matched again


@pytest.mark.parametrize(
    ("filename", "size", "created", "reason"),
    [
        ("d/a.txt", 6, T0 + 1, "other size"),
        ("d/b.txt", 5, T0 + 1, "other name"),
        ("d/a.txt", 5, T0 - 3, "created before the request started"),
        ("d/a.txt", 5, T0 + 5, "created after the client gave up"),
        ("d/a.txt", 5, T0 + 3600, "created much later"),
    ],
)
def test_files_that_do_not_match_are_never_touched(
    ledger: Ledger, filename: str, size: int, created: float, reason: str
) -> None:
    """A remote file differing in name, size or time is foreign: kept, not adopted,
    not even recorded as possibly ours."""
    remote = MemoryRemote()
    intend(ledger, "d/a.txt", 5)
    foreign = remote.add(filename, size, created)
    report = settle(ledger, remote)
    assert report.adopted == {} and report.not_stored == ["d/a.txt"], reason
    assert remote.deleted == [] and foreign in remote.files and report.kept == []
    assert ledger.open_intents() == [] and ledger.row("d/a.txt") is None


def test_known_ids_are_never_adopted_or_deleted(ledger: Ledger) -> None:
    """A matching file the ledger already tracks (another path's) is left alone."""
    remote = MemoryRemote()
    tracked = remote.add("a.txt", 5, T0 + 1)
    i = intend(ledger, "other", 5, at=T0 - 100)
    ledger.complete_upload(i, remote.files[tracked], stale=False, now=T0)
    intend(ledger, "a.txt", 5)
    report = settle(ledger, remote)
    assert report.adopted == {} and remote.deleted == [] and report.kept == []


def test_a_file_another_ledger_of_this_host_records_is_never_a_candidate(
    tmp_path: Path, ledger: Ledger, home: LedgerRegistry
) -> None:
    """Mirror B (its own ledger elsewhere, same state home) tracks an `a.txt` created in
    A's window: A neither adopts nor deletes nor keeps it."""
    remote = MemoryRemote()
    with Ledger.open(tmp_path / "elsewhere" / "b.db", registry=home) as other:
        theirs = remote.add("a.txt", 5, T0 + 1)
        b = intend(other, "a.txt", 5, at=T0 + 0.5)
        other.complete_upload(b, remote.files[theirs], stale=False, now=T0 + 1.5)
    intend(ledger, "a.txt", 5)
    report = settle(ledger, remote)
    assert report.adopted == {} and report.kept == [] and remote.deleted == []
    assert theirs in remote.files and ledger.candidates() == []


def test_a_copy_an_open_upload_of_another_ledger_may_have_made_is_kept(
    tmp_path: Path, ledger: Ledger, home: LedgerRegistry
) -> None:
    """B's upload of `a.txt` is in flight too (open, its answer not back): the one file
    in A's window may be B's, so A keeps it and uploads again."""
    remote = MemoryRemote()
    other = Ledger.open(tmp_path / "elsewhere" / "b.db", registry=home)
    try:
        intend(other, "a.txt", 5, at=T0 + 0.2, gave_up=None)
        other.heartbeat(now=T0 + 1)
        intend(ledger, "a.txt", 5)
        stored = remote.add("a.txt", 5, T0 + 1)
        report = settle(ledger, remote)
    finally:
        other.close()
    assert report.adopted == {} and report.kept == [stored] and remote.deleted == []
    assert ledger.candidates()[0].reason == Doubt.OTHER_LEDGER.value


def test_an_unreadable_or_vanished_ledger_in_the_registry_is_skipped(
    tmp_path: Path, ledger: Ledger, home: LedgerRegistry
) -> None:
    """A registered ledger that is gone, or not a ledger, does not stop reconciling."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    home.register(junk)
    gone = tmp_path / "gone.db"
    with Ledger.open(gone, registry=home):
        pass
    gone.unlink()
    remote = MemoryRemote()
    intend(ledger, "a.txt", 5)
    stored = remote.add("a.txt", 5, T0 + 1)
    assert settle(ledger, remote).adopted == {"a.txt": stored}


def test_after_a_crash_a_copy_past_the_last_sign_of_life_is_kept(
    tmp_path: Path, home: LedgerRegistry
) -> None:
    """An intent a crash left open ends at the heartbeat (sealed at the next open): a copy
    within seconds of it is adopted; one minutes later is possibly ours, kept."""
    remote = MemoryRemote()
    path = tmp_path / "crashed.db"
    with Ledger.open(path, registry=home) as first_life:
        intend(first_life, "a.txt", 5, gave_up=None)
        intend(first_life, "b.txt", 5, gave_up=None)
        first_life.heartbeat(now=T0 + 4)
    with Ledger.open(path, registry=home) as led:  # the next start seals them
        assert {i.alive_at for i in led.open_intents()} == {T0 + 4}
        ours = remote.add("a.txt", 5, T0 + 5)
        later = remote.add("b.txt", 5, T0 + 120)
        report = settle(led, remote)
        assert report.adopted == {"a.txt": ours} and report.kept == [later]
        assert led.candidates()[0].reason == Doubt.LATE.value
    assert remote.deleted == []


def test_basename_only_servers_still_match() -> None:
    """A server that keeps only the last part of the name still matches the intent."""
    assert filename_matches("a.txt", "d/e/a.txt")
    assert filename_matches("say%22hi%22.txt", 'say"hi".txt')  # the wire's escaping
    assert not filename_matches("b.txt", "d/a.txt")


def test_adoption_of_a_replace_deletes_the_old_version(ledger: Ledger) -> None:
    """Adopting a replace's upload also deletes the version it replaced."""
    remote = MemoryRemote()
    old = remote.add("a.txt", 3, T0 - 500)
    first = intend(ledger, "a.txt", 3, at=T0 - 501)
    ledger.complete_upload(first, remote.files[old], stale=False, now=T0 - 500)
    intend(ledger, "a.txt", 5, replaces=old)
    new = remote.add("a.txt", 5, T0 + 1)
    report = settle(ledger, remote)
    assert report.adopted == {"a.txt": new} and old in remote.deleted
    assert set(remote.files) == {new}


def test_several_intents_for_one_path(ledger: Ledger) -> None:
    """The newest intent adopts its copy; the single copy in an older intent's window is
    provably that request's and is deleted."""
    remote = MemoryRemote()
    intend(ledger, "a.txt", 3, at=T0)
    intend(ledger, "a.txt", 5, at=T0 + 5)
    stale_copy = remote.add("a.txt", 3, T0 + 1)
    current = remote.add("a.txt", 5, T0 + 6)
    report = settle(ledger, remote)
    assert report.adopted == {"a.txt": current} and report.duplicates_deleted == [stale_copy]
    assert ledger.row("a.txt").size == 5


def test_open_deletes_are_redone(ledger: Ledger) -> None:
    """An open delete intent is carried out again; the path's row goes with it."""
    remote = MemoryRemote()
    fid = remote.add("a.txt", 5, T0)
    i = intend(ledger, "a.txt", 5, at=T0 - 1)
    ledger.complete_upload(i, remote.files[fid], stale=False, now=T0)
    ledger.begin_delete("a.txt", fid, now=T0 + 1)
    report = settle(ledger, remote)
    assert report.deletes_finished == 1 and remote.deleted == [fid]
    assert ledger.row("a.txt") is None and ledger.open_intents() == []


def test_a_name_of_another_path_is_never_matched_by_its_last_part(ledger: Ledger) -> None:
    """`x.txt`'s upload is not adopted for `d/x.txt` (same size, both answers lost)."""
    remote = MemoryRemote()
    intend(ledger, "d/x.txt", 5)
    intend(ledger, "x.txt", 5)
    nested = remote.add("d/x.txt", 5, T0 + 1)
    top = remote.add("x.txt", 5, T0 + 2)  # newer: the last-part rule alone would pick it
    report = settle(ledger, remote)
    assert report.adopted == {"d/x.txt": nested, "x.txt": top}
    assert remote.deleted == [] and report.not_stored == []


def test_a_basename_only_server_copy_is_adopted_when_no_path_owns_the_name(
    ledger: Ledger,
) -> None:
    """A server that keeps only `a.txt` for `d/e/a.txt` still gets its upload adopted."""
    remote = MemoryRemote()
    intend(ledger, "d/e/a.txt", 5)
    stored = remote.add("a.txt", 5, T0 + 1)
    assert settle(ledger, remote).adopted == {"d/e/a.txt": stored}


def test_a_stop_after_adopting_leaves_no_copy_unreferenced(ledger: Ledger) -> None:
    """If deleting copies is cut short (here a refused key), they stay open delete intents."""
    remote = MemoryRemote()
    old = remote.add("a.txt", 3, T0 - 500)
    first = intend(ledger, "a.txt", 3, at=T0 - 501)
    ledger.complete_upload(first, remote.files[old], stale=False, now=T0 - 500)
    intend(ledger, "a.txt", 4, at=T0 - 5, replaces=old)  # an earlier attempt, stored
    copy = remote.add("a.txt", 4, T0 - 4)
    intend(ledger, "a.txt", 5, replaces=old)
    kept = remote.add("a.txt", 5, T0 + 1)
    real_delete = remote.delete

    def refuse(file_id: str) -> None:
        raise FatalError("delete: injected 401", status=401)

    remote.delete = refuse  # type: ignore[method-assign]
    with pytest.raises(FatalError):
        settle(ledger, remote)
    assert {i.file_id for i in ledger.open_intents()} == {copy, old}
    remote.delete = real_delete  # type: ignore[method-assign]
    settle(ledger, remote)
    assert set(remote.files) == {kept} and ledger.row("a.txt").file_id == kept
    assert ledger.open_intents() == []


def test_a_late_visible_copy_of_an_upload_found_not_stored_is_swept(ledger: Ledger) -> None:
    """A copy stamped while its request ran but listed only after reconcile found nothing
    is deleted by the next sweep; files outside the window, of another size or known to
    the ledger are kept and not recorded."""
    remote = MemoryRemote()
    intend(ledger, "a.txt", 5)
    assert settle(ledger, remote).not_stored == ["a.txt"]  # nothing visible yet
    ghost = remote.add("a.txt", 5, T0 + 1)  # stamped when received, listed only now
    again = intend(ledger, "a.txt", 5, at=T0 + 20)  # the path was uploaded again
    reupload = remote.add("a.txt", 5, T0 + 21)
    ledger.complete_upload(again, remote.files[reupload], stale=False, now=T0 + 22)
    later = remote.add("a.txt", 5, T0 + 60)  # someone else's, later
    other_size = remote.add("a.txt", 6, T0 + 1)
    report = reconciler(ledger, remote).sweep_late_copies(list(remote.files.values()))
    assert report.duplicates_deleted == [ghost] and remote.deleted == [ghost]
    assert set(remote.files) == {reupload, later, other_size} and report.kept == []
    assert ledger.row("a.txt").file_id == reupload and ledger.open_intents() == []


def test_the_sweep_keeps_two_late_copies_and_forgets_vanished_candidates(
    ledger: Ledger,
) -> None:
    """Two files in a not-stored request's window are kept, not deleted; a kept file
    someone deleted is forgotten at the next sweep."""
    remote = MemoryRemote()
    intend(ledger, "a.txt", 5)
    settle(ledger, remote)
    one = remote.add("a.txt", 5, T0 + 1)
    two = remote.add("a.txt", 5, T0 + 1)
    sweeper = reconciler(ledger, remote)
    report = sweeper.sweep_late_copies(list(remote.files.values()))
    assert sorted(report.kept) == sorted([one, two]) and remote.deleted == []
    del remote.files[one]  # its owner deleted it
    sweeper.sweep_late_copies(list(remote.files.values()))
    assert [c.file_id for c in ledger.candidates()] == [two]


@pytest.mark.parametrize("earlier_sha", ["11" * 32, SHA], ids=["other content", "same content"])
def test_a_late_copy_of_an_earlier_attempt_is_deleted_and_the_current_adopted(
    ledger: Ledger, earlier_sha: str
) -> None:
    """An earlier attempt closed as not stored whose copy shows up late (in its own
    window): the current attempt's own copy is adopted (settling lists only back to its
    window), and the next sweep deletes the late one."""
    remote = MemoryRemote()
    earlier = intend(ledger, "a.txt", 5, at=T0, sha=earlier_sha)
    ledger.abandon_intent(earlier, NOT_STORED, now=T0 + 5)
    intend(ledger, "a.txt", 5, at=T0 + 20)
    late = remote.add("a.txt", 5, T0 + 1)
    current = remote.add("a.txt", 5, T0 + 21)
    report = settle(ledger, remote)
    assert report.adopted == {"a.txt": current} and remote.deleted == []
    swept = reconciler(ledger, remote).sweep_late_copies(list(remote.files.values()))
    assert swept.duplicates_deleted == [late] and set(remote.files) == {current}


def test_a_copy_that_an_earlier_attempt_of_other_content_may_have_made_is_deleted(
    ledger: Ledger,
) -> None:
    """Windows of two attempts with other contents overlap (the first crashed, the file
    changed, same size): their one copy is syncd's but may hold the old content, so it
    is deleted, not adopted, and the path is uploaded again."""
    remote = MemoryRemote()
    earlier = intend(ledger, "a.txt", 5, at=T0, sha="11" * 32, gave_up=4.0)
    ledger.abandon_intent(earlier, NOT_STORED, now=T0 + 5)
    intend(ledger, "a.txt", 5, at=T0 + 1)
    one = remote.add("a.txt", 5, T0 + 2)
    report = settle(ledger, remote)
    assert report.adopted == {} and report.kept == [] and remote.deleted == [one]
    assert report.not_stored == ["a.txt"]


def test_a_purpose_that_downloads_proves_the_content_first(ledger: Ledger) -> None:
    """Batch: both files in the window are downloaded; the one with our SHA-256 is
    adopted, the one with other bytes is someone else's and is left out entirely."""
    remote = MemoryRemote()
    ours_bytes = b'{"custom_id":1}'
    sha = hashlib.sha256(ours_bytes).hexdigest()
    intend(ledger, "b.jsonl", len(ours_bytes), sha=sha, purpose="batch")
    theirs = remote.add("b.jsonl", len(ours_bytes), T0 + 1, "batch", b'{"custom_id":2}')
    ours = remote.add("b.jsonl", len(ours_bytes), T0 + 1, "batch", ours_bytes)
    report = settle(ledger, remote)
    assert report.adopted == {"b.jsonl": ours} and report.kept == []
    assert sorted(remote.downloaded) == sorted([ours, theirs]) and remote.deleted == []


def test_no_download_is_tried_for_a_purpose_that_refuses_it(ledger: Ledger) -> None:
    """user_data cannot be downloaded: the single copy is adopted on its window alone."""
    remote = MemoryRemote()
    intend(ledger, "a.txt", 5)
    stored = remote.add("a.txt", 5, T0 + 1)
    assert settle(ledger, remote).adopted == {"a.txt": stored} and remote.downloaded == []


def test_last_parts_are_not_matched_once_the_server_is_seen_keeping_directories(
    ledger: Ledger,
) -> None:
    """A tracked `d/y.txt` stored as `d/y.txt` shows whole names are kept: `x.txt` is
    then never taken for `d/x.txt`'s upload."""
    remote = MemoryRemote()
    nested = remote.add("d/y.txt", 3, T0 - 300)
    first = intend(ledger, "d/y.txt", 3, at=T0 - 301)
    ledger.complete_upload(first, remote.files[nested], stale=False, now=T0 - 300)
    intend(ledger, "d/x.txt", 5)
    stranger = remote.add("x.txt", 5, T0 + 1)
    report = settle(ledger, remote)
    assert report.adopted == {} and report.not_stored == ["d/x.txt"]
    assert stranger in remote.files and remote.deleted == []


def test_a_late_copy_of_a_root_file_is_not_taken_for_a_nested_one(ledger: Ledger) -> None:
    """`x.txt`'s upload closed as not stored may still land: that `x.txt` is not `d/x.txt`'s."""
    remote = MemoryRemote()
    root = intend(ledger, "x.txt", 5, at=T0 - 10)
    ledger.abandon_intent(root, NOT_STORED, now=T0 - 5)
    intend(ledger, "d/x.txt", 5)
    late = remote.add("x.txt", 5, T0 + 1)
    report = settle(ledger, remote)
    assert report.adopted == {} and late in remote.files


def test_an_open_upload_outside_the_settled_group_still_owns_its_name(ledger: Ledger) -> None:
    """Settling only `d/x.txt` (a lost answer mid-pass) must not take the `x.txt` that an
    earlier, still unsettled upload of `x.txt` stored."""
    remote = MemoryRemote()
    intend(ledger, "x.txt", 5, at=T0 - 1)  # open: its own reconcile could not list
    nested = intend(ledger, "d/x.txt", 5)
    stored = remote.add("x.txt", 5, T0 + 1)
    group = [i for i in ledger.open_intents() if i.id == nested]
    report = reconciler(ledger, remote).settle(group)
    assert report.adopted == {} and report.not_stored == ["d/x.txt"]
    assert stored in remote.files
