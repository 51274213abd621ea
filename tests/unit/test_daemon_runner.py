"""MirrorRunner in-process against a real `syncd serve`: the scheduling decisions that the
end-to-end tests cannot reach quickly (a writer that never pauses, retry backoff)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import ServerProcess

from syncd.config import MirrorConfig
from syncd.daemon.keepalive import Heartbeat
from syncd.daemon.mirror import MirrorRunner
from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.settings import RemoteSettings
from syncd.state.ledger import Ledger
from syncd.testing import FakeClock


@pytest.fixture
def remote(server: ServerProcess) -> Iterator[HttpFilesRemote]:
    settings = RemoteSettings(base_url=server.base_url, api_key=server.client_key, max_attempts=1)
    with HttpFilesRemote(settings) as client:
        yield client


def make_runner(
    tmp_path: Path, remote: HttpFilesRemote, clock: FakeClock, debounce: float = 0.5
) -> MirrorRunner:
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    ledger = Ledger.open(tmp_path / "state" / "ledger.db")
    return MirrorRunner(
        MirrorConfig(folder=folder, debounce=debounce, concurrency=2),
        ledger,
        remote,
        wake=lambda due: None,
        heartbeat=Heartbeat(),
        stopping=threading.Event(),
        clock=clock,
        watch=False,  # the test notes hints itself, on its own clock
    )


def remote_names(remote: HttpFilesRemote) -> list[str]:
    return sorted(f.filename for f in remote.list_files())


def test_file_still_being_written_is_deferred_not_uploaded(
    tmp_path: Path, remote: HttpFilesRemote
) -> None:
    """A released hint whose file was modified within the debounce waits for quiet."""
    clock = FakeClock()
    runner = make_runner(tmp_path, remote, clock)
    try:
        assert runner.step() is not None  # the first full pass, on an empty folder
        path = runner.folder / "growing.log"
        path.write_text("first half")
        runner.queue.aggregator.note("growing.log", clock.now - 120)  # past max_delay: released
        assert runner.step() is None
        assert remote_names(remote) == []
        assert len(runner.queue.aggregator) == 1  # noted again, to be looked at once quiet
        past = time.time() - 10
        os.utime(path, (past, past))  # the writer has stopped
        clock.now += runner.queue.aggregator.debounce
        result = runner.step()
        assert result is not None and result.counts == {"uploaded": 1}
        assert remote_names(remote) == ["growing.log"]
    finally:
        runner.close()


def test_retryable_failure_is_scheduled_and_shown(
    tmp_path: Path, remote: HttpFilesRemote, server: ServerProcess
) -> None:
    """A file that failed with a 5xx shows as retrying, with its backoff as the next wake."""
    clock = FakeClock()
    runner = make_runner(tmp_path, remote, clock)
    try:
        (runner.folder / "a.txt").write_text("a")
        server.set_faults({"error_rate": 1.0, "error_statuses": [503], "routes": ["create"]})
        result = runner.step()
        assert result is not None and len(result.failures) == 1
        status = runner.status()
        assert status.retrying == 1 and status.failed == 0
        assert status.next_retry_in is not None and 50 < status.next_retry_in <= 60
        runner.request_full()
        clock.now += 1
        wait = runner.due_in(clock.now)
        assert wait == 0.0  # the full pass asked for above
        server.set_faults(None)
        runner.step()  # a full pass skips the file while its backoff runs
        assert remote_names(remote) == []
        wait = runner.due_in(clock.now)
        assert wait is not None and 50 < wait <= 60  # woken when the backoff ends
    finally:
        runner.close()


def test_delete_skipped_for_a_failed_upload_is_retried_soon(
    tmp_path: Path, remote: HttpFilesRemote, server: ServerProcess
) -> None:
    """A delete held back while a rename's new name fails to upload is looked at again
    shortly (not at the next rescan), and still waits while the new name does."""
    clock = FakeClock()
    runner = make_runner(tmp_path, remote, clock)
    try:
        (runner.folder / "old.txt").write_text("old")
        runner.step()  # the first full pass uploads old.txt
        server.set_faults({"error_rate": 1.0, "error_statuses": [503], "routes": ["create"]})
        new = runner.folder / "new.txt"
        (runner.folder / "old.txt").rename(new)  # old.txt's remote copy is new.txt's content
        past = time.time() - 10
        os.utime(new, (past, past))
        for path in ("old.txt", "new.txt"):
            runner.queue.aggregator.note(path, clock.now - 1)
        result = runner.step()
        assert result is not None and result.deletes_skipped == 1
        assert remote_names(remote) == ["old.txt"]
        wait = runner.due_in(clock.now)
        assert wait is not None and 5 <= wait < 10  # not the 600 s rescan, not at once
        server.set_faults(None)
        clock.now += wait
        result = runner.step()  # looked at again: new.txt still waits for its backoff
        assert result is not None and result.deletes_skipped == 1
        assert remote_names(remote) == ["old.txt"]  # so the only copy of "old" stays
    finally:
        runner.close()
