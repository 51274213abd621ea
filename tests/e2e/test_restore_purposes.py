"""`syncd pull` and `syncd verify` on a folder mixing purposes the API serves (batch) and
refuses (user_data, fine-tune), against `syncd serve` as strict as the real API."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from serverproc import ServerProcess
from synccli import list_remote, local_files, run_syncd, write

BATCH_LINE = '{"custom_id": "r%d", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
SERVED = {"batch/one.jsonl", "batch/two.jsonl"}
REFUSED = {"notes/a.txt", "notes/b.txt", "c.txt", "ft/train.jsonl"}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write(root, "batch/one.jsonl", BATCH_LINE % 1)
    write(root, "batch/two.jsonl", (BATCH_LINE % 2) * 50)
    write(root, "notes/a.txt", "alpha")
    write(root, "notes/b.txt", "bravo" * 1000)
    write(root, "c.txt", "charlie")
    write(root, "ft/train.jsonl", '{"messages": []}\n')
    return root


@pytest.fixture
def config(tmp_path: Path, folder: Path) -> Path:
    """batch/*.jsonl as batch, ft/*.jsonl as fine-tune, the rest user_data (the default)."""
    path = tmp_path / "syncd.toml"
    path.write_text(
        f"[[mirror]]\nfolder = {json.dumps(str(folder))}\n"
        f"state = {json.dumps(str(tmp_path / 'state'))}\n"
        '[[mirror.rules]]\nglob = "batch/*.jsonl"\npurpose = "batch"\n'
        '[[mirror.rules]]\nglob = "ft/*.jsonl"\npurpose = "fine-tune"\n'
    )
    return path


def mirror(server: ServerProcess, config: Path, folder: Path) -> dict[str, bytes]:
    result = run_syncd(server, "sync", "--config", config)
    assert result.returncode == 0, result.stderr
    return local_files(folder)


def pull(server: ServerProcess, dest: Path, folder: Path, tmp_path: Path, *args: str) -> Any:
    result = run_syncd(
        server, "pull", dest, "--folder", folder, "--state", tmp_path / "state", *args
    )
    print(result.stderr)  # shown when a test fails
    return result


def verify(server: ServerProcess, config: Path, folder: Path, *args: str) -> Any:
    result = run_syncd(server, "verify", folder, "--config", config, *args)
    print(result.stdout, result.stderr)
    return result


def test_pull_restores_what_downloads_and_sums_up_the_rest(
    server: ServerProcess, config: Path, folder: Path, tmp_path: Path
) -> None:
    """A lost mixed folder: the batch files come back bit for bit; nothing is asked for
    or written for the others; one short summary names their count, purposes, why and
    what to do (no line per file); exit 1."""
    content = mirror(server, config, folder)
    shutil.rmtree(folder)
    server.reset_stats()
    result = pull(server, folder, folder, tmp_path)
    assert result.returncode == 1
    assert local_files(folder) == {p: content[p] for p in SERVED}
    assert server.stats()["counts"].get("content", 0) == len(SERVED)
    assert (
        "syncd: not restored: 4 files (fine-tune: 1, user_data: 3): the API does not allow "
        "downloading files of these purposes, so nothing was written for them"
    ) in result.stderr
    assert "mirror, not a backup" in result.stderr
    assert "restore them from another copy of the folder" in result.stderr
    assert "INCOMPLETE: 2 pulled" in result.stderr
    assert "4 not downloadable" in result.stderr
    for path in REFUSED:
        assert path not in result.stderr
    assert "failed" not in result.stderr.replace("0 failed", "")
    assert "Traceback" not in result.stderr


def test_pull_verbose_names_each_file_not_restored(
    server: ServerProcess, config: Path, folder: Path, tmp_path: Path
) -> None:
    """With -v every file that could not be restored gets a log line with its path."""
    mirror(server, config, folder)
    result = run_syncd(
        server, "-v", "pull", tmp_path / "dest", "--folder", folder, "--state", tmp_path / "state"
    )
    assert result.returncode == 1
    logged = [line for line in result.stderr.splitlines() if "not_downloadable" in line]
    assert len(logged) == len(REFUSED)
    assert all(any(path in line for line in logged) for path in REFUSED)


def test_pull_into_the_intact_folder_is_complete(
    server: ServerProcess, config: Path, folder: Path, tmp_path: Path
) -> None:
    """Files already in DEST with the ledger's SHA-256 count as there, whatever their
    purpose: a pull into the intact folder is complete (exit 0) and downloads nothing."""
    mirror(server, config, folder)
    server.reset_stats()
    result = pull(server, folder, folder, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "complete: 0 pulled (0.0 MB), 6 already there" in result.stderr
    assert "not restored" not in result.stderr
    assert server.stats()["counts"].get("content", 0) == 0


def test_pull_all_writes_nothing_for_refused_purposes(
    server: ServerProcess, config: Path, folder: Path, tmp_path: Path
) -> None:
    """`pull --all` (no ledger) restores the batch files under their names and sums up
    the rest from the listing's purposes; `--purpose user_data` restores nothing."""
    content = mirror(server, config, folder)
    dest = tmp_path / "all"
    server.reset_stats()
    result = run_syncd(server, "pull", dest, "--all", "--state", tmp_path / "other-state")
    assert result.returncode == 1
    assert local_files(dest) == {p: content[p] for p in SERVED}
    assert server.stats()["counts"].get("content", 0) == len(SERVED)
    assert "not restored: 4 files (fine-tune: 1, user_data: 3)" in result.stderr
    only = run_syncd(
        server, "pull", tmp_path / "only", "--all", "--purpose", "user_data", "--state", tmp_path
    )
    assert only.returncode == 1
    assert "not restored: 3 files (user_data: 3)" in only.stderr
    assert "0 pulled" in only.stderr
    assert not (tmp_path / "only").exists() or local_files(tmp_path / "only") == {}


def test_allow_all_downloads_server_restores_everything(
    server_factory: Any, config: Path, folder: Path, tmp_path: Path
) -> None:
    """Against `syncd serve --allow-all-downloads`, `pull --try-all-purposes` restores
    every file, user_data and fine-tune included: exit 0."""
    server = server_factory(allow_all_downloads=True)
    content = mirror(server, config, folder)
    shutil.rmtree(folder)
    result = pull(server, folder, folder, tmp_path, "--try-all-purposes")
    assert result.returncode == 0, result.stderr
    assert local_files(folder) == content
    assert "complete: 6 pulled" in result.stderr


def test_a_server_refusing_downloads_is_a_per_file_outcome(
    server: ServerProcess, config: Path, folder: Path, tmp_path: Path
) -> None:
    """Asked for every purpose, the strict server answers 400 for the refused ones: each
    is counted as not downloadable in the summary, with the server's message, never a
    failure line or a traceback; the batch files are restored."""
    content = mirror(server, config, folder)
    dest = tmp_path / "dest"
    server.reset_stats()
    result = pull(server, dest, folder, tmp_path, "--try-all-purposes")
    assert result.returncode == 1
    assert server.stats()["counts"].get("content", 0) == len(content)
    assert local_files(dest) == {p: content[p] for p in SERVED}
    assert "not restored: 4 files (fine-tune: 1, user_data: 3): the server refused" in (
        result.stderr
    )
    assert "Not allowed to download files of purpose" in result.stderr
    assert "syncd: failed:" not in result.stderr
    assert "Traceback" not in result.stderr


def test_verify_checks_refused_purposes_by_size_and_agrees(
    server: ServerProcess, config: Path, folder: Path
) -> None:
    """A perfectly mirrored mixed folder verifies: exit 0, only the batch files are
    downloaded, and the summary says how many were checked by size only and why."""
    mirror(server, config, folder)
    server.reset_stats()
    result = verify(server, config, folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert server.stats()["counts"].get("content", 0) == len(SERVED)
    assert (
        "folder, ledger and remote agree (6 tracked files; 4 files checked by size, name, "
        "purpose and expiry only, not by content: the API does not allow downloading files "
        "of purpose fine-tune, user_data)"
    ) in result.stderr


def test_verify_json_lists_the_files_checked_by_size(
    server: ServerProcess, config: Path, folder: Path
) -> None:
    """`verify --json` names each file checked by size only, with its purpose."""
    mirror(server, config, folder)
    result = verify(server, config, folder, "--json")
    document = json.loads(result.stdout)
    assert result.returncode == 0 and document["ok"] is True
    assert {e["path"]: e["purpose"] for e in document["checked_by_size_only"]} == {
        "notes/a.txt": "user_data",
        "notes/b.txt": "user_data",
        "c.txt": "user_data",
        "ft/train.jsonl": "fine-tune",
    }


def test_verify_still_finds_what_it_can_check_without_downloading(
    server: ServerProcess, config: Path, folder: Path
) -> None:
    """For files it cannot download, verify still finds a local edit of the same size
    (by hash) and a remote file whose size differs from the ledger's."""
    mirror(server, config, folder)
    (folder / "notes/a.txt").write_text("alphA")
    remote = next(f for f in list_remote(server) if f["filename"] == "c.txt")
    with sqlite3.connect(server.data_dir / "files.db") as db:
        db.execute("UPDATE files SET bytes = 8 WHERE id = ?", (remote["id"],))
    result = verify(server, config, folder)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("local-changed") and "notes/a.txt" in line for line in lines)
    assert any(line.startswith("remote-size") and "c.txt" in line for line in lines)
    assert len(lines) == 2


def test_verify_counts_a_refused_download_as_checked_by_size(
    server: ServerProcess, config: Path, folder: Path
) -> None:
    """With --try-all-purposes the strict server's 400s are no difference: exit 0, and
    the summary says the server refused them."""
    mirror(server, config, folder)
    result = verify(server, config, folder, "--try-all-purposes")
    assert result.returncode == 0, result.stderr
    assert "4 files checked by size, name, purpose and expiry only" in result.stderr
    assert "the server refused 4 downloads" in result.stderr
    assert "remote-unreadable" not in result.stdout
