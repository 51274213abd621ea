"""kill -9 at every durable step of upload, replace and delete (SYNCD_CRASH_AT): the next
`syncd sync` converges to exactly the folder, with no duplicate and no orphan."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from serverproc import ServerProcess
from synccli import list_remote, local_files, remote_files, run_syncd, write

SCENARIOS = [
    ("new", "upload.intent"),
    ("new", "upload.sent"),
    ("new", "upload.committed"),
    ("replace", "upload.sent"),
    ("replace", "upload.committed"),
    ("replace", "replace.old_deleted"),
    ("delete", "delete.intent"),
    ("delete", "delete.sent"),
]


@pytest.mark.parametrize(("scenario", "step"), SCENARIOS)
def test_crash_at_step_converges(
    server: ServerProcess, tmp_path: Path, scenario: str, step: str
) -> None:
    """The crashed run dies by SIGKILL at the step; the next run leaves remote == folder."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "keep.txt", "keep")
    write(folder, "target.txt", "version one")
    if scenario != "new":
        assert run_syncd(server, "sync", folder, "--state", state).returncode == 0
        if scenario == "replace":
            write(folder, "target.txt", "version two, longer")
        else:
            (folder / "target.txt").unlink()
    crashed = run_syncd(
        server,
        "sync",
        folder,
        "--state",
        state,
        "--concurrency",
        "1",
        env={"SYNCD_CRASH_AT": step},
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    after = run_syncd(server, "sync", folder, "--state", state)
    assert after.returncode == 0, after.stderr
    assert remote_files(server) == local_files(folder)  # no duplicate names either
    assert len(list_remote(server)) == len(local_files(folder))  # no orphan


def test_unknown_crash_step_is_a_config_error(server: ServerProcess, tmp_path: Path) -> None:
    """A misspelt SYNCD_CRASH_AT is refused with the list of steps."""
    write(tmp_path / "d", "a.txt", "a")
    result = run_syncd(
        server,
        "sync",
        tmp_path / "d",
        "--state",
        tmp_path / "s",
        env={"SYNCD_CRASH_AT": "upload.sentt"},
    )
    assert result.returncode == 2 and "unknown step 'upload.sentt'" in result.stderr
