"""`syncd ls`: the remote listing with the files a ledger owns marked."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from serverproc import ServerProcess
from synccli import run_syncd, upload_directly, write


def mirror(server: ServerProcess, tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "data"
    write(folder, "a.txt", "alpha")
    write(folder, "sub dir/b.txt", "bravo")
    state = tmp_path / "state"
    result = run_syncd(server, "sync", folder, "--state", state)
    assert result.returncode == 0, result.stderr
    return folder, state


def test_ls_marks_owned_and_foreign_files(server: ServerProcess, tmp_path: Path) -> None:
    """Files the ledger tracks are marked with the path they mirror; a foreign file with
    the same name as a mirrored path is not."""
    folder, state = mirror(server, tmp_path)
    foreign = upload_directly(server, "a.txt", b"someone else's")
    result = run_syncd(server, "ls", "--json", "--folder", folder, "--state", state)
    assert result.returncode == 0, result.stderr
    entries = {e["id"]: e for e in json.loads(result.stdout)}
    assert len(entries) == 3
    assert entries[foreign]["owned"] is False
    assert entries[foreign]["path"] is None
    owned = {e["path"] for e in entries.values() if e["owned"] is True}
    assert owned == {"a.txt", "sub dir/b.txt"}
    assert "3 remote files, 2 owned by 1 ledger" in result.stderr


def test_ls_table_lines(server: ServerProcess, tmp_path: Path) -> None:
    """The table has one line per remote file; owned ones carry '*' and '-> path'."""
    _, state = mirror(server, tmp_path)
    foreign = upload_directly(server, "elsewhere.txt", b"x")
    result = run_syncd(server, "ls", "--state", state)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    (foreign_line,) = [line for line in lines if foreign in line]
    assert " * " not in foreign_line and "->" not in foreign_line
    assert sum(1 for line in lines if " * " in line and "-> " in line) == 2


def test_ls_purpose_filter_and_no_ledger(server: ServerProcess, tmp_path: Path) -> None:
    """Without any ledger every file is foreign; --purpose narrows the listing."""
    upload_directly(server, "u.txt", b"u")
    result = run_syncd(
        server, "ls", "--json", "--purpose", "batch", "--state", tmp_path / "empty-state"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    everything = run_syncd(server, "ls", "--json", "--state", tmp_path / "empty-state")
    assert [e["owned"] for e in json.loads(everything.stdout)] == [False]


def test_ls_escapes_hostile_filenames(server: ServerProcess, tmp_path: Path) -> None:
    """A filename carrying a terminal escape sequence is printed escaped."""
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="red\x1b[31m"\r\n\r\nx\r\n--{boundary}--\r\n'
    ).encode()
    httpx.post(
        f"{server.base_url}/files",
        content=body,
        headers={**server.headers(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    ).raise_for_status()
    result = run_syncd(server, "ls", "--state", tmp_path / "empty-state")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "red\\x1b[31m" in result.stdout


def test_ls_names_a_missing_ledger(server: ServerProcess, tmp_path: Path) -> None:
    """--state naming a ledger file that does not exist is a usage error, not a silent
    'nothing owned'."""
    result = run_syncd(server, "ls", "--state", tmp_path / "nope.db")
    assert result.returncode == 2
    assert "no ledger at" in result.stderr
