"""Reconciliation rules against an in-memory Files remote (no HTTP): what is adopted,
what is deleted as a provable duplicate, and what is never touched."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.api import RemoteFile
from syncd.errors import FatalError
from syncd.local.fingerprint import Fingerprint
from syncd.state.ledger import Ledger
from syncd.sync.reconcile import (
    CLOCK_SKEW_MARGIN,
    LATE_COPY_WINDOW,
    NOT_STORED,
    Reconciler,
    filename_matches,
)

T0 = 1_700_000_000.0


class MemoryRemote:
    """Just enough of FilesRemote for reconciliation: list (newest first) and delete."""

    def __init__(self) -> None:
        self.files: dict[str, RemoteFile] = {}
        self.deleted: list[str] = []
        self._ids = itertools.count(1)

    def add(self, filename: str, size: int, created: float, purpose: str = "user_data") -> str:
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = RemoteFile(file_id, filename, size, int(created), purpose)
        return file_id

    def list_files(self, purpose: str | None = None, order: str = "desc") -> Iterator[RemoteFile]:
        chosen = [f for f in self.files.values() if purpose in (None, f.purpose)]
        yield from sorted(chosen, key=lambda f: (f.created_at, f.id), reverse=order == "desc")

    def delete(self, file_id: str) -> None:
        self.deleted.append(file_id)
        self.files.pop(file_id, None)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.open(tmp_path / "l.db")
    yield led
    led.close()


def intend(ledger: Ledger, path: str, size: int, at: float = T0, replaces: str | None = None):
    fp = Fingerprint(size, 1, 1, "ab" * 32)
    return ledger.begin_upload(
        path, fp, filename=path, purpose="user_data", expires_after=None, replaces=replaces, now=at
    )


def settle(ledger: Ledger, remote: MemoryRemote):
    return Reconciler(ledger, remote, clock=lambda: T0 + 10).settle(ledger.open_intents())


def test_adopts_one_copy_and_deletes_the_other_matching_copies(ledger: Ledger) -> None:
    """Two stored copies of one intent: the newest is adopted, the other deleted."""
    remote = MemoryRemote()
    intend(ledger, "d/a.txt", 5)
    older = remote.add("d/a.txt", 5, T0 + 1)
    newer = remote.add("d/a.txt", 5, T0 + 2)
    report = settle(ledger, remote)
    assert report.adopted == {"d/a.txt": newer} and report.duplicates_deleted == [older]
    assert ledger.row("d/a.txt").file_id == newer and ledger.open_intents() == []


@pytest.mark.parametrize(
    ("filename", "size", "created", "reason"),
    [
        ("d/a.txt", 6, T0 + 1, "other size"),
        ("d/b.txt", 5, T0 + 1, "other name"),
        ("d/a.txt", 5, T0 - CLOCK_SKEW_MARGIN - 1, "created before the intent"),
    ],
)
def test_files_that_do_not_match_are_never_touched(
    ledger: Ledger, filename: str, size: int, created: float, reason: str
) -> None:
    """A remote file differing in name, size or time is foreign: kept, not adopted."""
    remote = MemoryRemote()
    intend(ledger, "d/a.txt", 5)
    foreign = remote.add(filename, size, created)
    report = settle(ledger, remote)
    assert report.adopted == {} and report.not_stored == ["d/a.txt"], reason
    assert remote.deleted == [] and foreign in remote.files
    assert ledger.open_intents() == [] and ledger.row("d/a.txt") is None


def test_known_ids_are_never_adopted_or_deleted(ledger: Ledger) -> None:
    """A matching file the ledger already tracks (another path's) is left alone."""
    remote = MemoryRemote()
    tracked = remote.add("a.txt", 5, T0 + 1)
    i = intend(ledger, "other", 5, at=T0 - 100)
    ledger.complete_upload(i, remote.files[tracked], stale=False, now=T0)
    intend(ledger, "a.txt", 5)
    report = settle(ledger, remote)
    assert report.adopted == {} and remote.deleted == []


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
    """Only the newest intent adopts; copies from older intents of the path are deleted."""
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
    intend(ledger, "a.txt", 5, replaces=old)
    copy = remote.add("a.txt", 5, T0 + 1)  # a proxy replayed the upload: two copies
    kept = remote.add("a.txt", 5, T0 + 2)
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


def test_a_late_copy_of_an_upload_found_not_stored_is_swept(ledger: Ledger) -> None:
    """A copy the server stored after reconcile found nothing is deleted by the next sweep;
    files outside the intent's window, of another size or known to the ledger are kept."""
    remote = MemoryRemote()
    intend(ledger, "a.txt", 5)
    assert settle(ledger, remote).not_stored == ["a.txt"]  # nothing there yet
    ghost = remote.add("a.txt", 5, T0 + 5)  # the request was carried out after all
    again = intend(ledger, "a.txt", 5, at=T0 + 20)  # the path was uploaded again
    reupload = remote.add("a.txt", 5, T0 + 21)
    ledger.complete_upload(again, remote.files[reupload], stale=False, now=T0 + 22)
    later = remote.add("a.txt", 5, T0 + 10 + LATE_COPY_WINDOW + 1)  # someone else's, later
    other_size = remote.add("a.txt", 6, T0 + 6)
    sweeper = Reconciler(ledger, remote, clock=lambda: T0 + 30)
    report = sweeper.sweep_late_copies(list(remote.files.values()))
    assert report.duplicates_deleted == [ghost] and remote.deleted == [ghost]
    assert set(remote.files) == {reupload, later, other_size}
    assert ledger.row("a.txt").file_id == reupload and ledger.open_intents() == []


def test_a_late_copy_of_other_content_is_never_adopted(ledger: Ledger) -> None:
    """A late copy of an earlier content of the same size (its upload was closed as not
    stored) may be the newest match: no copy whose content is in doubt is adopted."""
    remote = MemoryRemote()
    earlier = ledger.begin_upload(
        "a.txt",
        Fingerprint(5, 1, 1, "11" * 32),
        filename="a.txt",
        purpose="user_data",
        expires_after=None,
        replaces=None,
        now=T0,
    )
    ledger.abandon_intent(earlier, NOT_STORED, now=T0 + 5)
    intend(ledger, "a.txt", 5, at=T0 + 20)  # the file changed; same size, other hash
    current = remote.add("a.txt", 5, T0 + 21)
    late = remote.add("a.txt", 5, T0 + 25)  # the earlier request, carried out late
    report = settle(ledger, remote)
    assert report.adopted == {} and report.not_stored == ["a.txt"]
    assert sorted(report.duplicates_deleted) == sorted([current, late])
    assert remote.files == {} and ledger.open_intents() == []


def test_copies_of_the_same_content_are_adopted_despite_an_earlier_attempt(
    ledger: Ledger,
) -> None:
    """An earlier attempt with the same hash is no rival: the newest match is adopted."""
    remote = MemoryRemote()
    earlier = intend(ledger, "a.txt", 5, at=T0)
    ledger.abandon_intent(earlier, NOT_STORED, now=T0 + 5)
    intend(ledger, "a.txt", 5, at=T0 + 20)
    first = remote.add("a.txt", 5, T0 + 21)
    late = remote.add("a.txt", 5, T0 + 25)
    report = settle(ledger, remote)
    assert report.adopted == {"a.txt": late} and report.duplicates_deleted == [first]


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
    intend(ledger, "x.txt", 5, at=T0 - 10)  # open: its own reconcile could not list
    nested = intend(ledger, "d/x.txt", 5)
    stored = remote.add("x.txt", 5, T0 + 1)
    group = [i for i in ledger.open_intents() if i.id == nested]
    report = Reconciler(ledger, remote, clock=lambda: T0 + 10).settle(group)
    assert report.adopted == {} and report.not_stored == ["d/x.txt"]
    assert stored in remote.files
