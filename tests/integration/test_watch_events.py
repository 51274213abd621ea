"""FolderWatcher on a real folder with the real watchdog observer: what becomes a hint."""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.local.watch.aggregator import DirtyPathAggregator
from syncd.local.watch.watcher import FolderWatcher

DEADLINE = 10.0  # seconds; generous for a loaded 2-core machine, never reached when it works


class Recorder:
    """Collects hints, trouble and root-gone reports; waits on them with a deadline."""

    def __init__(self) -> None:
        self.hints: list[str] = []
        self.troubles: list[str] = []
        self.gone = threading.Event()
        self._changed = threading.Condition()
        self._sentinels = itertools.count()

    def hint(self, path: str) -> None:
        with self._changed:
            self.hints.append(path)
            self._changed.notify_all()

    def trouble(self, reason: str) -> None:
        with self._changed:
            self.troubles.append(reason)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool]) -> list[str]:
        with self._changed:
            ok = self._changed.wait_for(lambda: predicate(self.hints), timeout=DEADLINE)
            assert ok, f"hints so far: {self.hints}"
            return list(self.hints)

    def wait_for_hint(self, *paths: str) -> list[str]:
        return self.wait_for(lambda hints: all(path in hints for path in paths))

    def settle(self, folder: Path) -> list[str]:
        """The hints delivered before this call, sentinels left out.

        inotify delivers one instance's events in order, so once the hint of a sentinel
        directory made now arrives, every earlier event has been seen: this is how a test
        proves a hint did *not* come, without sleeping. mkdir is a single event, so a
        sentinel leaves no late hints behind.
        """
        sentinel = f"sentinel-{next(self._sentinels)}"
        (folder / sentinel).mkdir()
        hints = self.wait_for_hint(sentinel + "/")
        before = hints[: hints.index(sentinel + "/")]
        return [hint for hint in before if not hint.startswith("sentinel-")]

    def reset(self, folder: Path) -> None:
        """Wait until every earlier event has been delivered, then forget all hints."""
        self.settle(folder)
        with self._changed:
            self.hints.clear()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "mirror"
    path.mkdir()
    return path


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def watch(folder: Path, recorder: Recorder) -> Iterator[FolderWatcher]:
    watcher = FolderWatcher(
        folder,
        recorder.hint,
        on_trouble=recorder.trouble,
        on_root_gone=recorder.gone.set,
        root_check_interval=0.1,
    )
    watcher.start()
    assert watcher.alive
    yield watcher
    watcher.stop()


def test_created_file_is_hinted(folder: Path, recorder: Recorder, watch: FolderWatcher) -> None:
    """A new file produces a hint with its relative path."""
    (folder / "a.jsonl").write_text("{}\n")
    recorder.wait_for_hint("a.jsonl")
    assert recorder.troubles == []


def test_file_in_subdirectory_is_hinted_relative(
    folder: Path, recorder: Recorder, watch: FolderWatcher
) -> None:
    """Paths are relative to the folder and '/'-separated, however deep."""
    (folder / "x" / "y").mkdir(parents=True)
    (folder / "x" / "y" / "b.txt").write_text("b")
    recorder.wait_for_hint("x/", "x/y/b.txt")


def test_modified_file_is_hinted(folder: Path, recorder: Recorder, watch: FolderWatcher) -> None:
    """Appending to an existing file hints it again."""
    target = folder / "a.txt"
    target.write_text("1")
    recorder.reset(folder)
    with open(target, "a") as handle:
        handle.write("2")
    recorder.wait_for_hint("a.txt")


def test_touch_of_mtime_only_is_hinted(
    folder: Path, recorder: Recorder, watch: FolderWatcher
) -> None:
    """Changing only the mtime (IN_ATTRIB) is still a reason to look again."""
    target = folder / "a.txt"
    target.write_text("1")
    recorder.reset(folder)
    os.utime(target, (1_000_000, 1_000_000))
    recorder.wait_for_hint("a.txt")


def test_deleted_file_is_hinted(folder: Path, recorder: Recorder, watch: FolderWatcher) -> None:
    """Deleting a file hints its path (the caller finds it gone when it stats)."""
    target = folder / "gone.txt"
    target.write_text("x")
    recorder.reset(folder)
    target.unlink()
    recorder.wait_for_hint("gone.txt")


def test_moved_file_hints_both_names(
    folder: Path, recorder: Recorder, watch: FolderWatcher
) -> None:
    """A rename is the old path gone and the new path new: both are hinted."""
    (folder / "old.txt").write_text("x")
    recorder.reset(folder)
    (folder / "old.txt").rename(folder / "new.txt")
    recorder.wait_for_hint("old.txt", "new.txt")


def test_moved_directory_hints_both_sides_as_subtrees(
    folder: Path, recorder: Recorder, watch: FolderWatcher
) -> None:
    """Renaming a directory hints 'old/' and 'new/', each covering everything under it."""
    (folder / "old" / "deep").mkdir(parents=True)
    (folder / "old" / "deep" / "f.txt").write_text("x")
    recorder.reset(folder)
    (folder / "old").rename(folder / "new")
    recorder.wait_for_hint("old/", "new/")


def test_deleted_directory_is_hinted_as_subtree(
    folder: Path, recorder: Recorder, watch: FolderWatcher
) -> None:
    """Deleting a directory tree hints 'dir/' so the caller expands it to every file."""
    (folder / "d" / "e").mkdir(parents=True)
    (folder / "d" / "e" / "f.txt").write_text("x")
    recorder.reset(folder)
    shutil.rmtree(folder / "d")
    recorder.wait_for_hint("d/", "d/e/")


def test_directory_moved_out_of_the_folder_is_hinted(
    folder: Path, recorder: Recorder, watch: FolderWatcher, tmp_path: Path
) -> None:
    """A directory moved outside the folder hints 'dir/' (its files are gone from view)."""
    (folder / "d").mkdir()
    (folder / "d" / "f.txt").write_text("x")
    recorder.reset(folder)
    (folder / "d").rename(tmp_path / "elsewhere")
    recorder.wait_for_hint("d/")


def test_atomic_save_hints_the_final_name_not_the_temp(
    folder: Path, recorder: Recorder, watch: FolderWatcher
) -> None:
    """Write x.tmp then rename it over x: x is hinted, x.tmp never is."""
    (folder / "x.jsonl").write_text("v1")
    recorder.reset(folder)
    temp = folder / "x.jsonl.tmp"
    temp.write_text("v2")
    os.replace(temp, folder / "x.jsonl")
    recorder.wait_for_hint("x.jsonl")
    before = recorder.settle(folder)
    assert "x.jsonl.tmp" not in before


def test_editor_temp_files_are_ignored_by_default(
    folder: Path, recorder: Recorder, watch: FolderWatcher
) -> None:
    """Vim, Emacs and LibreOffice leftovers never become hints; the real file does."""
    for name in (".a.txt.swp", "a.txt~", ".#a.txt", "upload.tmp", ".~lock.a.odt#"):
        (folder / name).write_text("junk")
        (folder / name).unlink()
    (folder / "a.txt").write_text("real")
    before = recorder.settle(folder)
    assert before == ["a.txt"] * before.count("a.txt")
    assert "a.txt" in before


def test_ignore_list_is_configurable(folder: Path, recorder: Recorder) -> None:
    """A custom ignore list replaces the defaults: *.part ignored, *.swp now hinted."""
    watcher = FolderWatcher(
        folder,
        recorder.hint,
        ignore_globs=["*.part"],
        on_trouble=recorder.trouble,
        on_root_gone=recorder.gone.set,
    )
    watcher.start()
    try:
        (folder / "big.bin.part").write_text("x")
        (folder / ".a.swp").write_text("x")
        before = recorder.settle(folder)
        assert ".a.swp" in before
        assert "big.bin.part" not in before
    finally:
        watcher.stop()


def test_ignored_names_only_apply_to_files(
    folder: Path, recorder: Recorder, watch: FolderWatcher
) -> None:
    """A directory named like a temp file is still watched, and its files hinted."""
    (folder / "build.tmp").mkdir()
    (folder / "build.tmp" / "out.jsonl").write_text("x")
    recorder.wait_for_hint("build.tmp/", "build.tmp/out.jsonl")


def test_reading_files_produces_no_hints(
    folder: Path, recorder: Recorder, watch: FolderWatcher
) -> None:
    """syncd reads what it uploads: opens and reads must not come back as hints."""
    (folder / "r.txt").write_text("x")
    recorder.reset(folder)
    for _ in range(3):
        assert (folder / "r.txt").read_text() == "x"
    assert recorder.settle(folder) == []


def test_state_dir_inside_folder_is_ignored(folder: Path, recorder: Recorder) -> None:
    """Ledger writes in a state dir that (wrongly) sits inside the folder are not hinted."""
    state = folder / ".syncd"
    state.mkdir()
    watcher = FolderWatcher(
        folder,
        recorder.hint,
        on_trouble=recorder.trouble,
        on_root_gone=recorder.gone.set,
        state_dir=state,
    )
    watcher.start()
    try:
        (state / "ledger.db").write_text("rows")
        (folder / "data.txt").write_text("x")
        before = recorder.settle(folder)
        assert before == ["data.txt"] * len(before)
        assert before
    finally:
        watcher.stop()


def test_stop_releases_the_watch(folder: Path, recorder: Recorder, watch: FolderWatcher) -> None:
    """After stop() no hints arrive, alive is False, and stop() can be called again."""
    watch.stop()
    assert not watch.alive
    (folder / "late.txt").write_text("x")
    watch.stop()
    assert "late.txt" not in recorder.hints
    assert not recorder.gone.is_set()


def test_start_twice_is_refused(watch: FolderWatcher) -> None:
    """A watcher starts once; the daemon builds a new one to watch again."""
    with pytest.raises(RuntimeError):
        watch.start()


def test_root_renamed_away_reports_root_gone(
    folder: Path, recorder: Recorder, watch: FolderWatcher, tmp_path: Path
) -> None:
    """Renaming the watched folder away (no event for it) calls on_root_gone once."""
    folder.rename(tmp_path / "moved-away")
    assert recorder.gone.wait(DEADLINE)
    assert not watch.alive
    assert recorder.troubles == []


def test_root_deleted_reports_root_gone(
    folder: Path, recorder: Recorder, watch: FolderWatcher
) -> None:
    """Deleting the watched folder calls on_root_gone, not a hint per file."""
    (folder / "f.txt").write_text("x")
    recorder.wait_for_hint("f.txt")
    shutil.rmtree(folder)
    assert recorder.gone.wait(DEADLINE)
    assert not watch.alive


def test_root_replaced_by_another_directory_reports_root_gone(
    folder: Path, recorder: Recorder, watch: FolderWatcher, tmp_path: Path
) -> None:
    """A different directory at the same path (as after an unmount) counts as gone."""
    folder.rename(tmp_path / "original")
    folder.mkdir()
    assert recorder.gone.wait(DEADLINE)


def test_missing_root_at_start_reports_root_gone(tmp_path: Path, recorder: Recorder) -> None:
    """Starting on a folder that does not exist reports on_root_gone and stays not alive."""
    watcher = FolderWatcher(
        tmp_path / "absent",
        recorder.hint,
        on_trouble=recorder.trouble,
        on_root_gone=recorder.gone.set,
    )
    watcher.start()
    assert recorder.gone.is_set()
    assert not watcher.alive
    watcher.stop()


def test_failing_hint_callback_does_not_kill_the_watcher(folder: Path, recorder: Recorder) -> None:
    """An exception in on_hint is logged; later events are still delivered."""

    def flaky(path: str) -> None:
        if path == "boom.txt":
            raise RuntimeError("callback bug")
        recorder.hint(path)

    watcher = FolderWatcher(
        folder, flaky, on_trouble=recorder.trouble, on_root_gone=recorder.gone.set
    )
    watcher.start()
    try:
        (folder / "boom.txt").write_text("x")
        (folder / "after.txt").write_text("x")
        recorder.wait_for_hint("after.txt")
        assert watcher.alive
    finally:
        watcher.stop()


def test_hints_through_the_aggregator_become_one_ready_path_each(folder: Path) -> None:
    """A burst of writes and an atomic save each come out of the debounce exactly once."""
    aggregator = DirtyPathAggregator(debounce=0.5)
    watcher = FolderWatcher(
        folder,
        lambda hint: aggregator.note(hint, time.monotonic()),
        on_trouble=lambda reason: None,
        on_root_gone=lambda: None,
    )
    watcher.start()
    try:
        with open(folder / "log.jsonl", "a") as handle:
            for index in range(50):
                handle.write(f'{{"n": {index}}}\n')
                handle.flush()
        (folder / "x.jsonl.tmp").write_text("v2")
        os.replace(folder / "x.jsonl.tmp", folder / "x.jsonl")
        ready: list[str] = []
        deadline = time.monotonic() + DEADLINE
        pause = threading.Event()
        while not {"log.jsonl", "x.jsonl"} <= set(ready) and time.monotonic() < deadline:
            pause.wait(0.05)  # polling the aggregator the way the daemon's loop does
            ready += aggregator.ready(time.monotonic())
        assert sorted(ready) == ["log.jsonl", "x.jsonl"]
    finally:
        watcher.stop()
