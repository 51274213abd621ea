"""`syncd status`: counts, bytes, last pass and failed files, read from the ledger."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from serverproc import ServerProcess
from synccli import run_syncd, write


def test_status_after_a_pass_with_a_failure(server: ServerProcess, tmp_path: Path) -> None:
    """Status shows mirrored/failed counts, bytes, the last pass and each failure's reason."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "ok.txt", "12345")
    write(folder, "empty.txt", b"")
    assert run_syncd(server, "sync", folder, "--state", state).returncode == 1
    text = run_syncd(None, "status", folder, "--state", state)
    assert text.returncode == 0, text.stderr
    assert "mirrored:  1 files" in text.stdout
    assert "failed:    1" in text.stdout
    assert "empty.txt: empty file (0 bytes)" in text.stdout
    assert "not retried until the file changes" in text.stdout
    data = json.loads(run_syncd(None, "status", folder, "--state", state, "--json").stdout)
    assert data["mirrored"] == 1 and data["bytes"] == 5 and data["failed"] == 1
    assert data["folder"] == str(folder)
    assert data["last_pass"]["result"] == "incomplete"
    assert data["last_pass"]["counts"] == {"uploaded": 1}
    assert [p["path"] for p in data["problems"]] == ["empty.txt"]


def test_status_finds_the_only_ledger_and_works_while_locked(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Without FOLDER the state directory's single ledger is read, even while locked."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.txt", "a")
    assert run_syncd(server, "sync", folder, "--state", state).returncode == 0
    ledger = next(state.glob("*.db"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from syncd.state.ledger import Ledger; from pathlib import Path; import sys\n"
            f"l = Ledger.open(Path({str(ledger)!r})); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        result = run_syncd(None, "status", "--state", state, "--json")
    finally:
        holder.communicate("")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mirrored"] == 1


def test_status_without_a_ledger_or_with_several(server: ServerProcess, tmp_path: Path) -> None:
    """No ledger: say to run sync first; several: ask for the FOLDER. One line, exit 1."""
    state = tmp_path / "state"
    none = run_syncd(None, "status", "--state", state)
    assert none.returncode == 1 and "run `syncd sync FOLDER` first" in none.stderr
    for name in ("one", "two"):
        write(tmp_path / name, "a.txt", "a")
        assert run_syncd(server, "sync", tmp_path / name, "--state", state).returncode == 0
    several = run_syncd(None, "status", "--state", state)
    assert several.returncode == 1 and "several ledgers" in several.stderr
    named = run_syncd(None, "status", tmp_path / "two", "--state", state, "--json")
    assert json.loads(named.stdout)["folder"] == str(tmp_path / "two")


def test_status_default_state_directory(server: ServerProcess, tmp_path: Path) -> None:
    """Without --state, sync and status agree on $XDG_STATE_HOME/syncd."""
    folder = tmp_path / "data"
    write(folder, "a.txt", "a")
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg-state")}
    assert run_syncd(server, "sync", folder, env=env).returncode == 0
    assert list((tmp_path / "xdg-state" / "syncd").glob("data-*.db"))
    result = run_syncd(None, "status", folder, "--json", env=env)
    assert json.loads(result.stdout)["mirrored"] == 1
