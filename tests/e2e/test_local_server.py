"""`--local` beside a running `syncd run --local`: the other commands reach its server."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from test_run_support import DaemonProcess, run_command, wait_for, write

from syncd.commands._local import ENDPOINT_FILE


def ls_local(state: Path) -> list[dict[str, object]]:
    code, stdout, stderr = run_command("ls", "--local", "--state", state, "--json")
    assert code == 0, stderr
    listing: list[dict[str, object]] = json.loads(stdout)
    return listing


def names(listing: list[dict[str, object]]) -> list[str]:
    return sorted(str(entry["filename"]) for entry in listing)


def test_ls_and_verify_reach_the_running_local_server(tmp_path: Path) -> None:
    """While `run --local` runs, `ls --local` shows each file as it is mirrored (marked
    as owned) and `verify --local` agrees; a clean stop removes the 0600 endpoint file."""
    folder, state = tmp_path / "data", tmp_path / "state"
    folder.mkdir()
    endpoint = state / ENDPOINT_FILE
    with (daemon := DaemonProcess(None, folder, state, "--local")).start_ready():
        assert stat.S_IMODE(endpoint.stat().st_mode) == 0o600
        write(folder, "hello.txt", "hello")
        listing = wait_for(
            lambda: [e for e in ls_local(state) if e["filename"] == "hello.txt"],
            what="hello.txt listed by `syncd ls --local`",
        )
        assert listing[0]["owned"] is True and listing[0]["path"] == "hello.txt"
        code, _stdout, stderr = run_command("verify", folder, "--local", "--state", state)
        assert code == 0, stderr
        assert "using the local server of pid " in stderr
        assert json.loads(endpoint.read_text())["key"] not in daemon.log_text() + stderr
        assert daemon.stop() == 0
    assert not endpoint.exists()


def test_a_stale_endpoint_after_kill_9_is_ignored(tmp_path: Path) -> None:
    """After `kill -9` the endpoint file stays behind; `ls --local` sees its server is
    gone, starts its own over the same store, and lists what was mirrored."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.txt", "a")
    with (daemon := DaemonProcess(None, folder, state, "--local")).start_ready():
        assert daemon.proc is not None
        daemon.proc.kill()
        daemon.proc.wait()
    assert (state / ENDPOINT_FILE).exists()
    code, stdout, stderr = run_command("ls", "--local", "--state", state, "--json")
    assert code == 0, stderr
    assert "syncd: local server at " in stderr
    assert names(json.loads(stdout)) == ["a.txt"]
    assert not (state / ENDPOINT_FILE).exists()  # its own file, withdrawn at its end


def test_an_endpoint_that_is_a_symlink_is_never_followed(tmp_path: Path) -> None:
    """A symbolic link where the endpoint file belongs is neither trusted nor written
    through: the command starts its own server and the link's target is untouched."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    decoy = tmp_path / "decoy.json"
    content = json.dumps({"url": "http://127.0.0.1:9/v1", "key": "planted", "pid": 1})
    decoy.write_text(content)
    os.chmod(decoy, 0o600)
    (state / ENDPOINT_FILE).symlink_to(decoy)
    code, _stdout, stderr = run_command("ls", "--local", "--state", state, "--json")
    assert code == 0, stderr
    assert "syncd: local server at " in stderr and "using the local server" not in stderr
    assert decoy.read_text() == content
    assert not (state / ENDPOINT_FILE).is_symlink()


def test_the_local_servers_request_log_only_with_verbose(tmp_path: Path) -> None:
    """`sync --local` logs its own line per file, not the embedded server's; -v shows it."""
    folder, state = tmp_path / "data", tmp_path / "state"
    for n in range(5):
        write(folder, f"f{n}.txt", f"file {n}")
    code, _stdout, stderr = run_command(
        "--log-format", "json", "sync", folder, "--local", "--state", state
    )
    assert code == 0, stderr
    assert stderr.count('"event": "uploaded"') == 5
    assert "file_created" not in stderr
    write(folder, "late.txt", "late")
    code, _stdout, stderr = run_command(
        "--log-format", "json", "-v", "sync", folder, "--local", "--state", state
    )
    assert code == 0, stderr
    assert stderr.count('"event": "file_created"') == 1
