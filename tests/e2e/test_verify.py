"""`syncd verify FOLDER` end to end: folder, ledger and remote compared for real."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from serverproc import ServerProcess
from synccli import run_syncd, upload_directly, write

from syncd.paths import find_ledgers
from syncd.state.ledger import Ledger

# Content checks need files whose content the API serves: the folder is mirrored with
# purpose vision (any bytes) against the strict server. Refused purposes:
# test_restore_purposes.py.
DOWNLOADABLE = ("--purpose", "vision")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write(root, "a.txt", "alpha")
    write(root, "nested/b.txt", "bravo")
    write(root, "ünï cødé.txt", "charlie")
    write(root, "big.bin", os.urandom(200_000))
    return root


@pytest.fixture
def state(server: ServerProcess, folder: Path, tmp_path: Path) -> Path:
    """The folder mirrored once; returns the state directory."""
    state = tmp_path / "state"
    result = run_syncd(server, "sync", folder, "--state", state, *DOWNLOADABLE)
    assert result.returncode == 0, result.stderr
    return state


def verify(server: ServerProcess, folder: Path, state: Path, *args: str):
    result = run_syncd(server, "verify", folder, "--state", state, *args)
    print(result.stdout, result.stderr)  # shown when a test fails
    return result


def verify_json(server: ServerProcess, folder: Path, state: Path, *args: str) -> dict:
    result = verify(server, folder, state, "--json", *args)
    document = json.loads(result.stdout)
    document["_exit"] = result.returncode
    return document


def kinds(document: dict) -> set[tuple[str, str]]:
    return {(d["kind"], d["path"]) for d in document["differences"]}


def file_id_of(state: Path, path: str) -> str:
    (ledger_file,) = find_ledgers(state, {})
    with Ledger.open_readonly(ledger_file) as ledger:
        row = ledger.row(path)
    assert row is not None and row.file_id is not None
    return row.file_id


@pytest.mark.parametrize("mode", [(), ("--quick",)])
def test_agreement_exits_zero(
    server: ServerProcess, folder: Path, state: Path, mode: tuple[str, ...]
) -> None:
    """A freshly mirrored folder agrees in both modes: exit 0, nothing on stdout."""
    result = verify(server, folder, state, *mode)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "agree (4 tracked files)" in result.stderr


def test_full_verify_downloads_everything_quick_downloads_nothing(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """The default mode downloads each tracked file once; --quick downloads none."""
    server.reset_stats()
    assert verify(server, folder, state).returncode == 0
    assert server.stats()["counts"].get("content", 0) == 4
    server.reset_stats()
    assert verify(server, folder, state, "--quick").returncode == 0
    assert server.stats()["counts"].get("content", 0) == 0


def test_finds_local_edit_remote_deletion_and_extra_copy(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """A local edit, a remote file deleted behind syncd's back, a second remote file under
    a mirrored name and a new local file are each named, one line each; exit 1."""
    (folder / "a.txt").write_text("alphA")  # same size, new content
    write(folder, "new.txt", "not mirrored yet")
    gone = file_id_of(state, "nested/b.txt")
    httpx.delete(f"{server.base_url}/files/{gone}", headers=server.headers()).raise_for_status()
    extra = upload_directly(server, "ünï cødé.txt", b"a copy")
    result = verify(server, folder, state)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("local-changed") and " a.txt " in line for line in lines)
    assert any(line.startswith("remote-missing") and "nested/b.txt" in line for line in lines)
    assert any(line.startswith("remote-extra") and extra in line for line in lines)
    assert any(line.startswith("not-mirrored") and "new.txt" in line for line in lines)
    assert len(lines) == 4
    assert "4 differences" in result.stderr


def test_quick_finds_the_same_without_downloading(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """--quick still finds a local edit (by stat, then hash), a deletion and an extra copy."""
    (folder / "a.txt").write_text("alphA")
    gone = file_id_of(state, "nested/b.txt")
    httpx.delete(f"{server.base_url}/files/{gone}", headers=server.headers()).raise_for_status()
    extra = upload_directly(server, "a.txt", b"a copy")
    document = verify_json(server, folder, state, "--quick")
    assert document["_exit"] == 1
    assert document["ok"] is False
    assert document["mode"] == "quick"
    assert kinds(document) == {
        ("local-changed", "a.txt"),
        ("remote-missing", "nested/b.txt"),
        ("remote-extra", "a.txt"),
    }
    assert {d["file_id"] for d in document["differences"] if d["kind"] == "remote-extra"} == {extra}


def test_corrupted_remote_content_is_found_only_by_full_verify(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """Same size, other bytes on the remote: the full check (download + hash) finds it,
    --quick (listing sizes) cannot."""
    blob = server.data_dir / "blobs" / file_id_of(state, "big.bin")
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0x01
    blob.write_bytes(bytes(data))
    assert verify(server, folder, state, "--quick").returncode == 0
    document = verify_json(server, folder, state)
    assert document["_exit"] == 1
    assert kinds(document) == {("remote-content", "big.bin")}


def test_size_difference_from_the_listing(server: ServerProcess, folder: Path, state: Path) -> None:
    """A remote file the listing reports with another size than the ledger recorded is
    named by --quick, and by the full check without downloading it."""
    file_id = file_id_of(state, "big.bin")
    with sqlite3.connect(server.data_dir / "files.db") as db:  # the remote's own metadata
        db.execute("UPDATE files SET bytes = 5 WHERE id = ?", (file_id,))
    quick = verify_json(server, folder, state, "--quick")
    assert kinds(quick) == {("remote-size", "big.bin")}
    assert "5 bytes" in quick["differences"][0]["detail"]
    server.reset_stats()
    full = verify_json(server, folder, state)
    assert kinds(full) == {("remote-size", "big.bin")}
    assert server.stats()["counts"].get("content", 0) == 3


def test_old_version_awaiting_its_delete_is_an_extra_copy(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """A remote file the ledger still intends to delete (a pass cut short) is reported as
    an extra copy, named as an old version."""
    old = upload_directly(server, "a.txt", b"old")
    (ledger_file,) = find_ledgers(state, {})
    with Ledger.open(ledger_file) as ledger:
        ledger.begin_delete("a.txt", old, now=time.time())
    document = verify_json(server, folder, state, "--quick")
    assert kinds(document) == {("remote-extra", "a.txt")}
    assert "old version" in document["differences"][0]["detail"]
    listing = run_syncd(server, "ls", "--json", "--state", state)
    (entry,) = [e for e in json.loads(listing.stdout) if e["id"] == old]
    assert entry["owned"] == "pending-delete"
    assert entry["path"] == "a.txt"


def test_locally_deleted_file_is_named(server: ServerProcess, folder: Path, state: Path) -> None:
    """A tracked file gone from the folder (not synced since) is reported."""
    (folder / "a.txt").unlink()
    document = verify_json(server, folder, state, "--quick")
    assert kinds(document) == {("local-missing", "a.txt")}


def test_excluded_paths_are_not_reported(server: ServerProcess, folder: Path, state: Path) -> None:
    """With the mirror's --exclude, excluded local files are not 'not mirrored'."""
    write(folder, "scratch/tmp.log", "noise")
    assert verify(server, folder, state, "--quick").returncode == 1
    assert verify(server, folder, state, "--quick", "--exclude", "scratch").returncode == 0


def test_missing_folder_says_how_to_restore(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """Verifying a folder that is gone: exit 2 and the pull command that brings it back."""
    shutil.rmtree(folder)
    result = verify(server, folder, state)
    assert result.returncode == 2
    assert f"syncd pull {folder} --folder {folder}" in result.stderr
    assert "Traceback" not in result.stderr


def test_full_verify_compares_name_purpose_and_expiry(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """A remote file whose name, purpose and expiry no longer match the ledger's is one
    remote-metadata difference naming all three (full mode; --quick stays size-only)."""
    file_id = file_id_of(state, "a.txt")
    expires = int(time.time()) + 7200
    with sqlite3.connect(server.data_dir / "files.db") as db:
        db.execute(
            "UPDATE files SET filename = 'b.txt', purpose = 'batch', expires_at = ? WHERE id = ?",
            (expires, file_id),
        )
    document = verify_json(server, folder, state)
    assert document["_exit"] == 1
    assert kinds(document) == {("remote-metadata", "a.txt")}
    detail = document["differences"][0]["detail"]
    assert "named 'b.txt'" in detail
    assert "purpose batch" in detail
    assert f"expires at {expires}" in detail
    assert verify(server, folder, state, "--quick").returncode == 0
