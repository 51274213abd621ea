"""A ledger belongs to one remote: another one is refused, unless switched to on purpose."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from serverproc import ServerProcess
from synccli import local_files, remote_files, run_syncd, write, write_counts


def local_listing(state: Path) -> list[dict[str, object]]:
    """What the --local server of ``state`` holds (through `syncd ls --local`)."""
    result = run_syncd(None, "ls", "--local", "--state", state, "--json")
    assert result.returncode == 0, result.stderr
    listing: list[dict[str, object]] = json.loads(result.stdout)
    return listing


def test_another_remote_is_refused_and_the_first_stays_clean(
    server: ServerProcess, tmp_path: Path
) -> None:
    """`sync --local`, `sync --base-url OTHER` (refused, exit 2, nothing sent), `sync
    --local` again: the local server still holds one copy per file, no orphan."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.txt", "a")
    write(folder, "b.txt", "b")
    assert run_syncd(None, "sync", folder, "--state", state, "--local").returncode == 0
    other = run_syncd(server, "sync", folder, "--state", state)
    assert other.returncode == 2
    assert other.stderr.count("\n") == 1 and other.stderr.startswith("syncd: ledger ")
    assert "--state" in other.stderr and "--switch-remote" in other.stderr
    assert server.client_key not in other.stderr
    assert write_counts(server) == {"create": 0, "delete": 0}
    back = run_syncd(None, "sync", folder, "--state", state, "--local", "--json")
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["counts"] == {}
    assert sorted(str(f["filename"]) for f in local_listing(state)) == ["a.txt", "b.txt"]


def test_switch_remote_mirrors_anew_and_leaves_the_old_copies(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """--switch-remote uploads everything to the new remote, deletes nothing on the old
    one, and from then on the old remote is the one refused."""
    first, second = server_factory(), server_factory()
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.txt", "a")
    assert run_syncd(first, "sync", folder, "--state", state).returncode == 0
    switched = run_syncd(second, "sync", folder, "--state", state, "--switch-remote")
    assert switched.returncode == 0, switched.stderr
    assert "switched from " in switched.stderr and "forgot the 1 copies" in switched.stderr
    assert remote_files(second) == local_files(folder)
    assert remote_files(first) == local_files(folder)  # left untouched
    assert write_counts(first)["delete"] == 0
    assert run_syncd(first, "sync", folder, "--state", state).returncode == 2
    status = run_syncd(None, "status", folder, "--state", state, "--json")
    assert json.loads(status.stdout)["remote"] == second.base_url


def test_a_new_key_or_a_new_port_of_the_same_store_is_the_same_remote(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A rotated key is not refused (and said); the same store behind a new port is
    recognised by its files; neither uploads anything again."""
    store = tmp_path / "store"
    server = server_factory(data_dir=store)
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.txt", "a")
    first = run_syncd(server, "sync", folder, "--state", state, env={"OPENAI_API_KEY": "sk-one"})
    assert first.returncode == 0, first.stderr
    rotated = run_syncd(server, "sync", folder, "--state", state, env={"OPENAI_API_KEY": "sk-two"})
    assert rotated.returncode == 0, rotated.stderr
    assert "API key" in rotated.stderr and "changed" in rotated.stderr
    assert "sk-one" not in rotated.stderr and "sk-two" not in rotated.stderr
    for kept in state.rglob("*"):  # only a fingerprint of the key is recorded
        assert not kept.is_file() or b"sk-two" not in kept.read_bytes(), kept
    server.stop()
    moved = server_factory(data_dir=store)
    assert moved.base_url != server.base_url
    again = run_syncd(moved, "sync", folder, "--state", state, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"] == {}
    assert write_counts(moved)["create"] == 0


def test_daemon_refuses_another_remote_before_it_starts(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """`syncd run` on a ledger of another remote exits 2 with one line, sending nothing."""
    first, second = server_factory(), server_factory()
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.txt", "a")
    assert run_syncd(first, "sync", folder, "--state", state).returncode == 0
    daemon = run_syncd(second, "run", folder, "--state", state)
    assert daemon.returncode == 2
    assert daemon.stderr.count("\n") == 1 and "--switch-remote" in daemon.stderr
    assert write_counts(second) == {"create": 0, "delete": 0}
