"""SyncEngine in-process against a real `syncd serve`: races, lost answers, crash leftovers,
retry backoff. A thin wrapper around the real HTTP remote runs a hook at an exact moment
(before or after an upload) so races are deterministic, not timed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProcess
from synccli import list_remote, local_files, remote_files, upload_directly, write

from syncd.config import MirrorConfig
from syncd.errors import FolderUnavailableError
from syncd.local.fingerprint import Fingerprint
from syncd.local.rules import PurposeRule
from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.settings import RemoteSettings
from syncd.state.ledger import Ledger
from syncd.sync.engine import SyncEngine
from syncd.sync.queue import DirtyQueue
from syncd.sync.reconcile import NOT_STORED

Hook = Callable[[str], None]


class HookedRemote:
    """The real remote, calling ``before(filename)``/``after(filename)`` around uploads."""

    def __init__(self, inner: HttpFilesRemote) -> None:
        self.inner = inner
        self.before: Hook | None = None
        self.after: Hook | None = None

    def upload(
        self,
        path: Path,
        filename: str,
        purpose: str,
        expires: int | None = None,
        *,
        size: int | None = None,
    ):
        if self.before:
            self.before(filename)
        result = self.inner.upload(path, filename, purpose, expires, size=size)
        if self.after:
            self.after(filename)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.open(tmp_path / "state" / "ledger.db")
    yield led
    led.close()


def make_remote(server: ServerProcess) -> HookedRemote:
    settings = RemoteSettings(
        base_url=server.base_url, api_key=server.client_key, max_attempts=2, backoff_base=0.01
    )
    return HookedRemote(HttpFilesRemote(settings, pool_size=4))


def engine_for(folder: Path, ledger: Ledger, remote: Any, clock: Clock | None = None, **kw):
    mirror = MirrorConfig(folder=folder, concurrency=kw.pop("concurrency", 1), **kw)
    return SyncEngine(mirror, ledger, remote, clock=clock or Clock())


def test_file_vanishing_between_scan_and_upload(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """A file deleted after the scan is reported as vanished, queued, and not uploaded."""
    write(folder, "a.txt", "a")
    write(folder, "b.txt", "b")
    remote = make_remote(server)
    remote.before = lambda name: (folder / "b.txt").unlink(missing_ok=True)
    queue = DirtyQueue(ledger)
    result = engine_for(folder, ledger, remote).run_pass()
    queue.settle(result, None)
    assert result.counts == {"uploaded": 1, "vanished": 1}
    assert result.requeued == {"b.txt"} and set(ledger.dirty_paths()) == {"b.txt"}
    follow_up = engine_for(folder, ledger, remote).run_pass(only_paths=result.requeued)
    queue.settle(follow_up, result.requeued)
    assert follow_up.in_sync and ledger.dirty_paths() == {}
    assert remote_files(server) == {"a.txt": b"a"}


def test_file_vanishing_as_its_upload_opens_it_is_not_a_failure(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """A file removed after it was hashed, just before the client opens it, is "vanished":
    queued again, no failure, no backoff, and the pass's deletes still run."""
    write(folder, "a.txt", "a")
    write(folder, "old.txt", "old")
    remote = make_remote(server)
    engine = engine_for(folder, ledger, remote)
    assert engine.run_pass().in_sync
    (folder / "old.txt").unlink()
    write(folder, "a.txt", "a changed")
    remote.before = lambda name: (folder / name).unlink()
    result = engine.run_pass()
    assert result.failures == [] and result.counts == {"vanished": 1, "deleted": 1}
    assert result.requeued == {"a.txt"} and ledger.row("a.txt").error_kind is None
    assert ledger.open_intents() == []


def test_full_pass_sweeps_a_late_copy_but_a_dry_run_does_not(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """A copy stamped within its request's window but listed only after the upload was
    reconciled as not stored goes at the next full pass (the path's mirrored copy
    stays); a dry run deletes nothing."""
    write(folder, "a.txt", "hello")
    clock = Clock()
    engine = engine_for(folder, ledger, make_remote(server), clock)
    intent = ledger.begin_upload(
        "a.txt",
        Fingerprint(5, 1, 1, None),
        filename="a.txt",
        purpose="user_data",
        expires_after=None,
        replaces=None,
        now=clock.now - 1,
    )
    ledger.record_gave_up(intent, now=clock.now + 5)  # the client waited till then
    ledger.abandon_intent(intent, NOT_STORED, now=clock.now + 5)
    assert engine.run_pass().in_sync
    mirrored = ledger.row("a.txt").file_id
    late = upload_directly(server, "a.txt", b"hello")  # the old request, visible only now
    engine.run_pass(dry_run=True)
    assert {f["id"] for f in list_remote(server)} == {mirrored, late}
    result = engine.run_pass()
    assert result.in_sync and result.reconciled.duplicates_deleted == [late]
    assert [f["id"] for f in list_remote(server)] == [mirrored]


def test_a_file_resized_before_its_upload_whose_answer_is_lost_leaves_no_orphan(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """The file grows between its hash and the upload, and every answer is lost: the
    upload sends only the size its intent records (the body is cut short, nothing is
    stored under another size), so no remote copy escapes reconciliation."""
    write(folder, "a.txt", "short")
    remote = make_remote(server)
    grown: list[str] = []

    def grow(name: str) -> None:
        if not grown:
            grown.append(name)
            write(folder, "a.txt", "much longer than before")

    remote.before = grow
    server.set_faults({"lost_answer_rate": 1.0, "routes": ["create"]})
    engine = engine_for(folder, ledger, remote)
    first = engine.run_pass()
    assert first.requeued == {"a.txt"}, first.to_json()
    assert engine.run_pass(only_paths={"a.txt"}, check_remote=False).in_sync
    server.set_faults(None)
    assert remote_files(server) == local_files(folder)
    assert len(list_remote(server)) == 1 and ledger.candidates() == []


def test_file_changing_after_upload_is_uploaded_again(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """A file modified while its upload was in flight is not recorded as current."""
    write(folder, "a.txt", "first")
    remote = make_remote(server)
    remote.after = lambda name: write(folder, "a.txt", "second!")
    engine = engine_for(folder, ledger, remote)
    result = engine.run_pass()
    assert result.requeued == {"a.txt"} and not result.in_sync
    assert ledger.row("a.txt").sha256 is None  # the stale hash is not recorded
    remote.after = None
    follow_up = engine.run_pass(only_paths=result.requeued)
    assert follow_up.in_sync and follow_up.counts == {"replaced": 1}
    assert remote_files(server) == {"a.txt": b"second!"}


def test_file_changing_size_while_sent_stores_nothing(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """A file that grows between hashing and sending is stopped and handled again."""
    write(folder, "a.txt", "x" * 100)
    remote = make_remote(server)

    def grow_during_send(name: str) -> None:
        # Open the file as the client will, then grow it before the body is read.
        remote.before = None
        write(folder, "a.txt", "y" * 200)

    remote.before = grow_during_send
    result = engine_for(folder, ledger, remote).run_pass()
    assert result.requeued == {"a.txt"}
    follow_up = engine_for(folder, ledger, remote).run_pass(only_paths=result.requeued)
    assert follow_up.in_sync
    assert remote_files(server) == {"a.txt": b"y" * 200}


def test_lost_answers_are_adopted_not_duplicated(
    server_factory: Callable[..., ServerProcess], folder: Path, ledger: Ledger
) -> None:
    """With half of the create answers lost (file stored, 502 sent), no duplicate remains."""
    server = server_factory(faults={"seed": 3, "lost_answer_rate": 0.5, "routes": ["create"]})
    for i in range(20):
        write(folder, f"f{i:02}.txt", f"content {i}")
    result = engine_for(folder, ledger, make_remote(server), concurrency=4).run_pass()
    assert result.in_sync, result.to_json()
    assert result.reconciled is not None and result.reconciled.adopted
    server.set_faults(None)
    assert remote_files(server) == local_files(folder)
    assert len(list_remote(server)) == 20


def fp_of(path: Path) -> Fingerprint:
    import hashlib

    st = path.stat()
    return Fingerprint(
        st.st_size, st.st_mtime_ns, st.st_ino, hashlib.sha256(path.read_bytes()).hexdigest()
    )


def test_crash_after_upload_before_commit_is_adopted(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """An open intent whose file reached the server is adopted; a file of another size
    is not syncd's and stays."""
    path = write(folder, "a.txt", "hello")
    clock = Clock()
    ledger.begin_upload(
        "a.txt",
        fp_of(path),
        filename="a.txt",
        purpose="user_data",
        expires_after=None,
        replaces=None,
        now=clock.now,
    )
    first = upload_directly(server, "a.txt", b"hello")  # what the dead process sent
    foreign = upload_directly(server, "a.txt", b"other bytes")  # not ours: other size
    server.reset_stats()
    result = engine_for(folder, ledger, make_remote(server), clock).run_pass()
    assert result.in_sync, result.to_json()
    assert server.stats()["counts"].get("create", 0) == 0
    assert ledger.row("a.txt").file_id == first
    assert {f["id"] for f in list_remote(server)} == {first, foreign}


def test_two_copies_of_a_crashed_upload_are_kept_and_the_path_uploaded_again(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """Two same-size copies in the window of one open intent cannot be told from ours
    and a stranger's: neither is adopted nor deleted, both are kept as candidates and
    the file is uploaded again."""
    path = write(folder, "a.txt", "hello")
    clock = Clock()
    ledger.begin_upload(
        "a.txt",
        fp_of(path),
        filename="a.txt",
        purpose="user_data",
        expires_after=None,
        replaces=None,
        now=clock.now,
    )
    first = upload_directly(server, "a.txt", b"hello")  # what the dead process sent
    second = upload_directly(server, "a.txt", b"hello")  # a replay, or someone else's
    server.reset_stats()
    result = engine_for(folder, ledger, make_remote(server), clock).run_pass()
    assert result.in_sync, result.to_json()
    assert server.stats()["counts"].get("create", 0) == 1
    assert server.stats()["counts"].get("delete", 0) == 0
    mirrored = ledger.row("a.txt").file_id
    assert {f["id"] for f in list_remote(server)} == {first, second, mirrored}
    assert {c.file_id for c in ledger.candidates()} == {first, second}


def test_crash_before_upload_reached_the_server(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """An open intent with nothing stored is closed and the file uploaded once."""
    path = write(folder, "a.txt", "hello")
    clock = Clock()
    ledger.begin_upload(
        "a.txt",
        fp_of(path),
        filename="a.txt",
        purpose="user_data",
        expires_after=None,
        replaces=None,
        now=clock.now,
    )
    result = engine_for(folder, ledger, make_remote(server), clock).run_pass()
    assert result.in_sync and result.counts == {"uploaded": 1}
    assert remote_files(server) == {"a.txt": b"hello"}
    assert ledger.open_intents() == []


def test_interrupted_delete_is_finished(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """An open delete intent is carried out at the next start (404 counts as done)."""
    write(folder, "keep.txt", "keep")
    engine = engine_for(folder, ledger, make_remote(server))
    assert engine.run_pass().in_sync
    doomed = upload_directly(server, "old.txt", b"old")
    ledger.begin_delete("old.txt", doomed, now=time.time())
    ledger.begin_delete("gone.txt", "file-never-existed", now=time.time())
    result = engine.run_pass()
    assert result.in_sync and result.reconciled.deletes_finished == 2
    assert {f["filename"] for f in list_remote(server)} == {"keep.txt"}


def test_retryable_failures_back_off_and_skip_deletes(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """A 503 on create is recorded with backoff; the renamed file's old copy is not deleted
    while the new name waits; later it retries, and only then the old copy goes."""
    write(folder, "old.txt", "old")
    clock = Clock()
    engine = engine_for(folder, ledger, make_remote(server), clock)
    assert engine.run_pass().in_sync
    (folder / "old.txt").rename(folder / "new.txt")
    server.set_faults({"error_rate": 1.0, "error_statuses": [503], "routes": ["create"]})
    failed = engine.run_pass()
    assert [o.action.path for o in failed.failures] == ["new.txt"]
    assert failed.deletes_skipped == 1 and "old.txt" in remote_files(server)
    row = ledger.row("new.txt")
    assert row.error_kind == "retryable" and row.next_attempt_at == clock.now + 60
    server.set_faults(None)
    server.reset_stats()
    waiting = engine.run_pass()
    assert server.stats()["counts"].get("create", 0) == 0
    assert waiting.still_failing and not waiting.in_sync
    assert waiting.deletes_skipped == 1 and "old.txt" in remote_files(server)
    clock.now += 61
    done = engine.run_pass()
    assert done.in_sync, done.to_json()
    assert remote_files(server) == {"new.txt": b"old"}


def test_a_failing_upload_holds_back_only_the_deletes_of_its_content(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """While b.txt (a rename of a.txt) fails, a.txt's copy stays; unrelated deletes go."""
    for name in ("a.txt", "x.txt", "y.txt"):
        write(folder, name, f"content of {name}")
    engine = engine_for(folder, ledger, make_remote(server))
    assert engine.run_pass().in_sync
    (folder / "a.txt").rename(folder / "b.txt")
    (folder / "x.txt").unlink()
    server.set_faults({"error_rate": 1.0, "error_statuses": [503], "routes": ["create"]})
    result = engine.run_pass()
    assert [o.action.path for o in result.failures] == ["b.txt"]
    assert result.counts.get("deleted") == 1 and result.deletes_skipped == 1
    assert set(remote_files(server)) == {"a.txt", "y.txt"}
    assert result.unfinished == {"a.txt"}


def test_a_failure_before_hashing_holds_back_deletes_of_the_same_size(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """A rename refused before it was hashed (a fine-tune file losing .jsonl) keeps the old
    copy (same size) in that pass; a delete of another size goes ahead. The refusal is
    permanent, so the next pass deletes the old copy (nothing will replace it)."""
    write(folder, "ft/a.jsonl", '{"messages": []}\n')
    write(folder, "b.txt", "b")
    rules = (PurposeRule("ft/**", "fine-tune"),)
    engine = engine_for(folder, ledger, make_remote(server), rules=rules)
    assert engine.run_pass().in_sync
    (folder / "ft/a.jsonl").rename(folder / "ft/a.json")
    (folder / "b.txt").unlink()
    result = engine.run_pass()
    assert [o.reason for o in result.failures] == ["purpose fine-tune needs a .jsonl file"]
    assert result.counts == {"deleted": 1} and result.deletes_skipped == 1
    assert set(remote_files(server)) == {"ft/a.jsonl"}
    assert engine.run_pass().counts == {"deleted": 1}
    assert remote_files(server) == {}


def test_bad_key_stops_the_pass(
    server_factory: Callable[..., ServerProcess], folder: Path, ledger: Ledger
) -> None:
    """401 is fatal: the pass stops, says so, and deletes nothing."""
    server = server_factory(api_key="the-right-key")
    for i in range(5):
        write(folder, f"f{i}.txt", "x")
    settings = RemoteSettings(base_url=server.base_url, api_key="wrong", max_attempts=1)
    engine = engine_for(folder, ledger, HttpFilesRemote(settings), concurrency=2)
    result = engine.run_pass()  # the listing is refused first
    assert result.fatal and "key" in result.fatal and result.verdict == "fatal"
    server.reset_stats()
    result = engine.run_pass(check_remote=False)  # now the uploads are refused
    assert result.fatal and result.counts == {"not_run": 3}  # 2 workers, 5 files
    assert server.stats()["unauthenticated"] <= 2  # no new work after the first 401
    assert ledger.open_intents() == []


def test_dry_run_touches_neither_remote_nor_ledger(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """A dry run plans, lists, and writes nothing anywhere."""
    write(folder, "a.txt", "a")
    result = engine_for(folder, ledger, make_remote(server)).run_pass(dry_run=True)
    assert [a.path for a in result.plan.actions] == ["a.txt"]
    assert ledger.rows() == {} and ledger.last_pass() is None
    assert list_remote(server) == []


def test_only_paths_pass_handles_just_those(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """run_pass(only_paths) uploads/deletes only below the given paths (daemon's entry)."""
    write(folder, "a.txt", "a")
    write(folder, "d/b.txt", "b")
    engine = engine_for(folder, ledger, make_remote(server))
    assert engine.run_pass().in_sync
    write(folder, "c.txt", "c")
    (folder / "d" / "b.txt").unlink()
    (folder / "d").rmdir()
    result = engine.run_pass(only_paths=["d"])
    assert result.counts == {"deleted": 1}
    assert set(remote_files(server)) == {"a.txt"}


def test_dirty_queue_keeps_what_a_pass_could_not_finish(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """The queue unqueues what a pass handled; skipped deletes and a missing folder keep theirs."""
    write(folder, "a.txt", "a")
    write(folder, "b.txt", "b")
    clock = Clock()
    engine = engine_for(folder, ledger, make_remote(server), clock)
    assert engine.run_pass().in_sync
    (folder / "a.txt").rename(folder / "c.txt")  # c.txt's upload fails: a.txt must wait
    ledger.mark_dirty(["a.txt", "c.txt"], now=clock.now - 1)
    server.set_faults({"error_rate": 1.0, "error_statuses": [400], "routes": ["create"]})
    result = engine.run_pass(only_paths=["a.txt", "c.txt"])
    DirtyQueue(ledger).settle(result, ["a.txt", "c.txt"])
    assert result.deletes_skipped == 1
    assert set(ledger.dirty_paths()) == {"a.txt"}  # c.txt failed (recorded); a.txt waits
    folder.rename(folder.with_name("moved-away"))
    with pytest.raises(FolderUnavailableError):
        engine.run_pass(only_paths=["a.txt"])
    assert set(ledger.dirty_paths()) == {"a.txt"}


def test_folder_swapped_during_a_pass_holds_deletes_back(
    server: ServerProcess, folder: Path, ledger: Ledger, tmp_path: Path
) -> None:
    """A folder unmounted (swapped for another directory) mid-pass deletes nothing."""
    remote = make_remote(server)
    for name in ("keep.txt", "gone.txt"):
        write(folder, name, name.encode())
    assert engine_for(folder, ledger, remote).run_pass().in_sync
    (folder / "gone.txt").unlink()
    write(folder, "new.txt", b"new")

    def swap_folder(_filename: str) -> None:
        folder.rename(tmp_path / "elsewhere")
        folder.mkdir()

    remote.after = swap_folder
    result = engine_for(folder, ledger, remote).run_pass()
    assert not result.in_sync
    assert result.deletes_skipped == 1
    assert any("changed during the pass" in w for w in result.warnings)
    assert sorted(f["filename"] for f in list_remote(server)) == [
        "gone.txt",
        "keep.txt",
        "new.txt",
    ]


def test_a_file_that_grows_before_its_lost_answer_leaves_no_copy_of_another_size(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """The upload sends exactly the size its intent records: a file that grew after it was
    hashed is never stored whole, so lost answers cannot leave a copy reconcile misses."""
    write(folder, "a.txt", "small")
    remote = make_remote(server)
    grown = {"done": False}

    def grow(name: str) -> None:
        if not grown["done"]:
            grown["done"] = True
            with open(folder / "a.txt", "a") as handle:
                handle.write(" and then much larger")

    remote.before = grow
    server.set_faults({"lost_answer_rate": 1.0, "routes": ["create"]})
    engine = engine_for(folder, ledger, remote)
    first = engine.run_pass()
    assert first.counts.get("changed") == 1 and first.requeued == {"a.txt"}
    assert list_remote(server) == []  # the cut-short body stored nothing
    server.set_faults(None)
    assert engine.run_pass(only_paths=first.requeued).in_sync
    assert remote_files(server) == {"a.txt": b"small and then much larger"}


def test_stop_abandons_what_is_still_in_flight_after_the_grace(
    server: ServerProcess, folder: Path, ledger: Ledger
) -> None:
    """A stop while uploads hang: the pass returns once the grace is over, counting the
    hanging uploads as abandoned (intents left open) and the rest as not run."""
    for i in range(6):
        write(folder, f"f{i}.txt", f"file {i}")
    remote = make_remote(server)
    release = threading.Event()
    engine = engine_for(folder, ledger, remote, concurrency=2)
    engine.stop_grace = 0.3
    started: list[str] = []

    def hang(filename: str) -> None:
        started.append(filename)
        if len(started) == 2:
            engine.request_stop()
        release.wait(30)

    remote.before = hang
    began = time.monotonic()
    result = engine.run_pass()
    took = time.monotonic() - began
    try:
        assert took < 10
        assert result.interrupted and result.verdict == "interrupted" and not result.in_sync
        assert result.counts == {"abandoned": 2, "not_run": 4}
        assert len(ledger.open_intents()) == 2
        later = engine.run_pass()  # the stop is for good: a later pass starts nothing
        assert later.interrupted and later.counts == {"not_run": 4}
    finally:
        release.set()
    deadline = time.monotonic() + 30
    while ledger.open_intents():  # the abandoned uploads end on their own
        assert time.monotonic() < deadline, "the abandoned uploads never ended"
        time.sleep(0.05)
