"""`syncd sync` end to end: the real command against a real `syncd serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from serverproc import ServerProcess
from synccli import (
    list_remote,
    local_files,
    remote_files,
    run_syncd,
    sync_json,
    upload_directly,
    write,
    write_counts,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write(root, "a.txt", "alpha")
    write(root, "nested/deeper/b.txt", "bravo")
    write(root, "with space/ünïcødé näme.txt", "charlie")
    return root


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def sync(server: ServerProcess, folder: Path, state: Path, *args: str):
    return run_syncd(server, "sync", folder, "--state", state, *args)


def test_first_pass_mirrors_and_second_pass_writes_nothing(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """Nested, spaced and non-ASCII names are mirrored; an unchanged pass sends no write."""
    first = sync(server, folder, state)
    assert first.returncode == 0, first.stderr
    assert remote_files(server) == local_files(folder)
    assert "in sync: 3 uploaded" in first.stderr
    server.reset_stats()
    second = sync(server, folder, state)
    assert second.returncode == 0, second.stderr
    assert write_counts(server) == {"create": 0, "delete": 0}


def test_modify_replaces_and_removes_the_old_copy(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """A changed file is uploaded again and its old remote copy deleted (one copy left)."""
    assert sync(server, folder, state).returncode == 0
    write(folder, "a.txt", "alpha, version two")
    server.reset_stats()
    result = sync(server, folder, state)
    assert result.returncode == 0, result.stderr
    assert write_counts(server) == {"create": 1, "delete": 1}
    assert remote_files(server) == local_files(folder)  # also asserts no duplicate names


def test_touch_without_change_uploads_nothing(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """A new mtime with the same content is recorded without any write call."""
    assert sync(server, folder, state).returncode == 0
    os.utime(folder / "a.txt", ns=(1, 1))
    server.reset_stats()
    data = sync_json(server, folder, state)
    assert data["_exit"] == 0 and data["counts"] == {"refreshed": 1}
    assert write_counts(server) == {"create": 0, "delete": 0}


def test_delete_and_rename(server: ServerProcess, folder: Path, state: Path) -> None:
    """A deleted file's copy is deleted; a rename is a new name uploaded, the old deleted."""
    assert sync(server, folder, state).returncode == 0
    (folder / "a.txt").unlink()
    (folder / "nested" / "deeper" / "b.txt").rename(folder / "nested" / "b-renamed.txt")
    result = sync(server, folder, state)
    assert result.returncode == 0, result.stderr
    assert remote_files(server) == local_files(folder)
    assert set(local_files(folder)) == {"nested/b-renamed.txt", "with space/ünïcødé näme.txt"}


def test_dry_run_lists_actions_and_writes_nothing(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """--dry-run prints each planned action with its path and makes no create/delete."""
    assert sync(server, folder, state).returncode == 0
    write(folder, "new.txt", "new")
    write(folder, "a.txt", "changed")
    (folder / "nested" / "deeper" / "b.txt").unlink()
    before = remote_files(server)
    server.reset_stats()
    result = sync(server, folder, state, "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("upload") and "new.txt" in line for line in lines)
    assert any(line.startswith("replace") and "a.txt" in line for line in lines)
    assert any(line.startswith("delete") and "nested/deeper/b.txt" in line for line in lines)
    assert write_counts(server) == {"create": 0, "delete": 0}
    assert remote_files(server) == before
    assert sync(server, folder, state).returncode == 0  # the real pass still does it all
    assert remote_files(server) == local_files(folder)


def test_mass_delete_guard_refuses_and_says_how_to_override(
    server: ServerProcess, tmp_path: Path, state: Path
) -> None:
    """Deleting more than half of >10 tracked files is refused until --max-delete allows."""
    folder = tmp_path / "many"
    for i in range(12):
        write(folder, f"f{i:02}.txt", f"file {i}")
    assert sync(server, folder, state).returncode == 0
    for path in folder.iterdir():
        path.unlink()
    write(folder, "survivor.txt", "still here")
    server.reset_stats()
    refused = sync(server, folder, state)
    assert refused.returncode == 1
    assert "refusing to delete 12 of 12" in refused.stderr
    assert "--max-delete 12" in refused.stderr
    assert write_counts(server) == {"create": 1, "delete": 0}  # uploads still happen
    allowed = sync(server, folder, state, "--max-delete", "12")
    assert allowed.returncode == 0, allowed.stderr
    assert remote_files(server) == {"survivor.txt": b"still here"}


def test_explicit_max_delete(server: ServerProcess, folder: Path, state: Path) -> None:
    """--max-delete N refuses a pass deleting more than N files."""
    assert sync(server, folder, state).returncode == 0
    (folder / "a.txt").unlink()
    (folder / "nested" / "deeper" / "b.txt").unlink()
    refused = sync(server, folder, state, "--max-delete", "1")
    assert refused.returncode == 1 and "more than --max-delete 1" in refused.stderr
    assert len(list_remote(server)) == 3


def test_foreign_remote_files_are_never_touched(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """Files syncd did not upload survive, even with the name of a deleted local file."""
    foreign_same_name = upload_directly(server, "a.txt", b"someone else's a.txt")
    foreign_other = upload_directly(server, "unrelated.bin", b"not ours")
    assert sync(server, folder, state).returncode == 0
    (folder / "a.txt").unlink()
    assert sync(server, folder, state).returncode == 0
    ids = {f["id"] for f in list_remote(server)}
    assert {foreign_same_name, foreign_other} <= ids
    assert len(ids) == 4  # two foreign + b.txt + the unicode file


def test_remote_copy_deleted_behind_our_back_is_uploaded_again(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """A full pass lists the remote; a tracked file missing there is uploaded again."""
    assert sync(server, folder, state).returncode == 0
    victim = next(f for f in list_remote(server) if f["filename"] == "a.txt")
    url = f"{server.base_url}/files/{victim['id']}"
    httpx.delete(url, headers=server.headers()).raise_for_status()
    data = sync_json(server, folder, state)
    assert data["_exit"] == 0 and data["counts"] == {"uploaded": 1}
    assert remote_files(server) == local_files(folder)


def test_json_summary(server: ServerProcess, folder: Path, state: Path) -> None:
    """--json prints one JSON object with the result, counts and failures."""
    data = sync_json(server, folder, state)
    assert data["result"] == "ok" and data["in_sync"] is True
    assert data["counts"] == {"uploaded": 3}
    assert data["bytes_uploaded"] == sum(len(v) for v in local_files(folder).values())
    assert data["failed"] == [] and data["refusal"] is None


def test_config_rules_choose_purposes(server: ServerProcess, tmp_path: Path) -> None:
    """[[mirror.rules]] in --config map globs to purposes; excluded files stay local."""
    folder = tmp_path / "ds"
    write(folder, "fine-tune/set/train.jsonl", '{"messages": []}\n')
    write(folder, "docs/readme.txt", "read me")
    write(folder, "scratch/tmp.txt", "ignored")
    config = write(
        tmp_path,
        "syncd.toml",
        textwrap.dedent(f"""
        [[mirror]]
        folder = "{folder}"
        state = "{tmp_path / "st"}"
        exclude = ["scratch"]
        [[mirror.rules]]
        glob = "fine-tune/**/*.jsonl"
        purpose = "fine-tune"
    """),
    )
    result = run_syncd(server, "sync", "--config", config)
    assert result.returncode == 0, result.stderr
    purposes = {f["filename"]: f["purpose"] for f in list_remote(server)}
    assert purposes == {"fine-tune/set/train.jsonl": "fine-tune", "docs/readme.txt": "user_data"}


def test_include_and_exclude_options(server: ServerProcess, folder: Path, state: Path) -> None:
    """--include/--exclude select paths; excluded tracked files are not deleted remotely."""
    assert (
        sync(server, folder, state, "--include", "**/*.txt", "--exclude", "nested").returncode == 0
    )
    assert set(remote_files(server)) == {"a.txt", "with space/ünïcødé näme.txt"}
    assert sync(server, folder, state, "--exclude", "a.txt").returncode == 0
    assert "a.txt" in remote_files(server)  # out of scope now, but left alone


def test_second_process_is_refused_naming_the_holder(
    server: ServerProcess, folder: Path, state: Path, tmp_path: Path
) -> None:
    """While another process holds the ledger, sync exits 1 naming that process."""
    assert sync(server, folder, state).returncode == 0
    ledger = next(state.glob("*.db"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from syncd.state.ledger import Ledger; from pathlib import Path; import sys\n"
            f"l = Ledger.open(Path({str(ledger)!r})); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        result = sync(server, folder, state)
        assert result.returncode == 1
        assert f"in use by another syncd process (pid {holder.pid}" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        holder.communicate("")


def test_wrong_key_stops_with_one_line(
    server_factory: Callable[..., ServerProcess], folder: Path, state: Path
) -> None:
    """A refused key stops the pass: exit 1, a 'stopped' line, no traceback, key not shown."""
    server = server_factory(api_key="sk-right-key-123456")
    result = run_syncd(
        server, "sync", folder, "--state", state, env={"OPENAI_API_KEY": "sk-wrong-key-987654"}
    )
    assert result.returncode == 1
    assert "syncd: stopped:" in result.stderr and "key" in result.stderr
    assert "Traceback" not in result.stderr and "sk-wrong-key-987654" not in result.stderr


def test_local_server(tmp_path: Path, folder: Path, state: Path) -> None:
    """--local mirrors into an embedded server whose store lives in the state directory."""
    first = run_syncd(None, "sync", folder, "--state", state, "--local", "--json")
    assert first.returncode == 0, first.stderr
    assert '"uploaded": 3' in first.stdout
    assert (state / "local-server").is_dir()
    second = run_syncd(None, "sync", folder, "--state", state, "--local", "--json")
    assert second.returncode == 0 and '"counts": {}' in second.stdout


def test_editor_temp_files_are_not_mirrored(
    server: ServerProcess, folder: Path, state: Path
) -> None:
    """`sync` skips the same editor temp files as the daemon (*.swp, *~, .#*, *.tmp)."""
    for name in (".a.txt.swp", "a.txt~", ".#a.txt", "draft.tmp", ".~lock.doc#"):
        write(folder, name, "temp")
    result = sync(server, folder, state)
    assert result.returncode == 0, result.stderr
    assert sorted(remote_files(server)) == [
        "a.txt",
        "nested/deeper/b.txt",
        "with space/ünïcødé näme.txt",
    ]
