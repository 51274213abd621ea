"""`delete_delay`: the remote copy of a locally deleted file goes only after the delay."""

from __future__ import annotations

import json
from pathlib import Path

from serverproc import ServerProcess
from test_run_support import (
    DaemonProcess,
    remote_names,
    run_command,
    wait_for,
    write,
    write_counts,
)


def config_with_delay(tmp_path: Path, folder: Path, delay: str) -> Path:
    config = tmp_path / "syncd.toml"
    config.write_text(f'[[mirror]]\nfolder = "{folder}"\ndelete_delay = "{delay}"\n')
    return config


def delayed(folder: Path, state: Path, config: Path) -> list[dict[str, object]]:
    code, stdout, stderr = run_command(
        "status", folder, "--state", state, "--config", config, "--json"
    )
    assert code == 0, stderr
    found: list[dict[str, object]] = json.loads(stdout)["delayed_deletes"]
    return found


def test_file_deleted_and_restored_within_the_delay(server: ServerProcess, tmp_path: Path) -> None:
    """Deleted and put back with the same content within the delay: nothing is deleted
    or uploaded; `syncd status` listed it with its time left meanwhile."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "keep.txt", "precious")
    config = config_with_delay(tmp_path, folder, "10m")
    with DaemonProcess(server, folder, state, "--config", str(config)) as daemon:
        daemon.start_ready()
        before = write_counts(server)
        (folder / "keep.txt").unlink()
        daemon.wait_event("delete_delayed", lambda e: e["path"] == "keep.txt")
        (entry,) = wait_for(lambda: delayed(folder, state, config), what="a delayed delete")
        assert entry["path"] == "keep.txt"
        assert str(entry["time_left"]).startswith(("10 min", "9 min"))
        code, stdout, _ = run_command("status", folder, "--state", state, "--config", config)
        assert code == 0 and "keep.txt: deleted remotely in" in stdout
        write(folder, "keep.txt", "precious")  # the same content, a new inode and mtime
        wait_for(lambda: not delayed(folder, state, config), what="the delay cancelled")
        assert write_counts(server) == before
        assert remote_names(server) == ["keep.txt"]
        assert daemon.stop() == 0


def test_delayed_delete_happens_when_due_and_survives_a_restart(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A deleted file's copy stays for the delay, across a restart, then is deleted; a
    file back with other content is replaced, not deleted."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "gone.txt", "bye")
    write(folder, "edited.txt", "v1")
    config = config_with_delay(tmp_path, folder, "4s")
    daemon = DaemonProcess(server, folder, state, "--config", str(config))
    with daemon.start_ready():
        (folder / "gone.txt").unlink()
        (folder / "edited.txt").unlink()
        wait_for(lambda: len(delayed(folder, state, config)) == 2, what="two delayed deletes")
        assert daemon.stop() == 0
    assert len(delayed(folder, state, config)) == 2  # kept in the ledger
    write(folder, "edited.txt", "v2, other content")
    with daemon.start_ready():
        wait_for(lambda: remote_names(server) == ["edited.txt"], what="gone.txt deleted")
        assert delayed(folder, state, config) == []
        assert write_counts(server) == {"create": 3, "delete": 2}  # a replace, one delete
        assert daemon.stop() == 0


def test_a_delay_that_does_not_parse_is_one_line(server: ServerProcess, tmp_path: Path) -> None:
    """delete_delay = "soon": exit 2 with one line naming the key, nothing started."""
    folder = tmp_path / "data"
    folder.mkdir()
    config = config_with_delay(tmp_path, folder, "soon")
    code, _, stderr = run_command("run", "--config", config, "--local")
    assert code == 2
    assert stderr.strip() == (
        "syncd: syncd.toml: [[mirror]] #1: delete_delay: delete_delay must be a duration "
        "such as 30s, 10m, 2h, 1d or a number of seconds, not 'soon'"
    )
