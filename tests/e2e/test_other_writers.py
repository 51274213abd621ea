"""Other writers on the same account (issue 12): two mirrors, each its own folder and its
own `--state` in another directory, of the same user on this host, and someone with no
ledger at all. Each scenario ends with the other writer's files untouched and each
mirror's own content exact (`syncd verify` exit 0 for both)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from serverproc import REPO_ROOT, ServerProcess, clean_env
from synccli import list_remote, run_syncd, upload_directly, write
from test_run_support import DaemonProcess, wait_for

from syncd.state.ledger import Ledger


class Mirror:
    """One folder and its ledger file, in a directory of its own."""

    def __init__(self, root: Path, name: str) -> None:
        self.folder = root / name
        self.folder.mkdir(parents=True)
        self.state = root / f"{name}-state" / "ledger.db"

    def sync(self, server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
        return run_syncd(server, "sync", self.folder, "--state", self.state, *args)

    def verify(self, server: ServerProcess) -> subprocess.CompletedProcess[str]:
        return run_syncd(server, "verify", self.folder, "--state", self.state)

    def rows(self) -> dict[str, str]:
        """path -> remote id, from the ledger (read-only)."""
        with Ledger.open_readonly(self.state) as ledger:
            assert ledger.open_intents() == []
            return {p: r.file_id for p, r in ledger.rows().items() if r.file_id}

    def status(self) -> dict[str, Any]:
        result = run_syncd(None, "status", self.folder, "--state", self.state, "--json")
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data


def content(server: ServerProcess, file_id: str) -> bytes:
    """What the server stored (read from its store: user_data cannot be downloaded)."""
    return server.stored_content(file_id)


def creating(server: ServerProcess) -> bool:
    """Whether an upload is in flight at the server."""
    return any(r["route"] == "create" and r["finished"] is None for r in server.stats()["requests"])


def contents(server: ServerProcess) -> dict[str, bytes]:
    """file id -> content of every remote file."""
    return {f["id"]: content(server, f["id"]) for f in list_remote(server)}


def assert_exact(server: ServerProcess, mirror: Mirror) -> None:
    """The mirror's ledger names one remote file per local file, with its bytes, and
    `syncd verify` agrees."""
    rows = mirror.rows()
    local = {
        p.relative_to(mirror.folder).as_posix(): p.read_bytes()
        for p in mirror.folder.rglob("*")
        if p.is_file()
    }
    assert set(rows) == set(local)
    assert {path: content(server, file_id) for path, file_id in rows.items()} == local
    verified = mirror.verify(server)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.fixture
def mirrors(tmp_path: Path) -> tuple[Mirror, Mirror]:
    return Mirror(tmp_path, "a"), Mirror(tmp_path, "b")


def test_lost_answers_of_one_mirror_never_take_the_other_mirrors_file(
    server: ServerProcess, mirrors: tuple[Mirror, Mirror]
) -> None:
    """Scenario 1: B syncs `a.txt`; then every answer to A's uploads is lost (stored,
    then 502). A adopts its own copy only; B's same-size `a.txt` stays B's."""
    a, b = mirrors
    write(a.folder, "a.txt", "AAAA")
    write(b.folder, "a.txt", "BBBB")
    assert b.sync(server).returncode == 0
    theirs = b.rows()["a.txt"]
    server.set_faults({"lost_answer_rate": 1.0, "routes": ["create"]})
    result = a.sync(server, "--json")
    server.set_faults(None)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reconciled"]["adopted"] == 1
    ours = a.rows()["a.txt"]
    assert ours != theirs and contents(server) == {theirs: b"BBBB", ours: b"AAAA"}
    assert a.status()["possibly_ours"] == 0
    assert_exact(server, a)
    assert_exact(server, b)


def test_a_failed_upload_never_claims_a_later_same_size_file(
    server: ServerProcess, mirrors: tuple[Mirror, Mirror]
) -> None:
    """Scenario 2: A's upload fails with plain 500s (nothing stored), its next pass
    uploads; later B uploads a same-size `a.txt`: A's no-change pass leaves it alone."""
    a, b = mirrors
    write(a.folder, "a.txt", "AAAA")
    write(b.folder, "a.txt", "BBBB")
    server.set_faults({"error_rate": 1.0, "error_statuses": [500], "routes": ["create"]})
    assert a.sync(server).returncode == 1
    server.set_faults(None)
    assert a.sync(server).returncode == 0
    assert b.sync(server).returncode == 0
    again = a.sync(server)
    assert again.returncode == 0, again.stderr
    theirs, ours = b.rows()["a.txt"], a.rows()["a.txt"]
    assert contents(server) == {theirs: b"BBBB", ours: b"AAAA"}
    assert a.status()["possibly_ours"] == 0 and b.status()["possibly_ours"] == 0
    assert_exact(server, a)
    assert_exact(server, b)


def test_an_anonymous_upload_during_a_lost_answer_is_kept_and_deletable_by_id(
    server: ServerProcess, mirrors: tuple[Mirror, Mirror]
) -> None:
    """Scenario 3: someone with no ledger uploads a same-name, same-size `a.txt` while
    A's request is in flight and its answer is lost. A cannot tell the two apart: it
    adopts neither, deletes neither, uploads again and reports both as possibly its
    own; `syncd candidates --delete ID` removes one only when asked (--dry-run first)."""
    a, _ = mirrors
    write(a.folder, "a.txt", "AAAA")
    server.set_faults({"latency_ms": 1500, "lost_answer_rate": 1.0, "routes": ["create"]})
    argv = [sys.executable, "-m", "syncd", "sync", str(a.folder), "--state", str(a.state)]
    argv += ["--base-url", server.base_url]
    with subprocess.Popen(
        argv,
        env=clean_env({"OPENAI_API_KEY": server.client_key}),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        wait_for(lambda: creating(server), what="A's upload in flight")
        server.set_faults(None)  # A's request keeps its fault: stored after 1.5 s, then 502
        stranger = upload_directly(server, "a.txt", b"XXXX")
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    ours = a.rows()["a.txt"]
    remote = contents(server)
    assert remote[stranger] == b"XXXX" and remote[ours] == b"AAAA" and len(remote) == 3
    [lost] = [i for i, data in remote.items() if i not in (stranger, ours)]
    assert remote[lost] == b"AAAA"  # A's first request, kept: it cannot be told apart
    assert a.status()["possibly_ours"] == 2
    listed = run_syncd(server, "ls", "--folder", a.folder, "--state", a.state)
    marked = [line for line in listed.stdout.splitlines() if "possibly ours, not deleted" in line]
    assert sorted(line.split()[0] for line in marked) == sorted([stranger, lost])
    assert_exact(server, a)

    def candidates(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return run_syncd(server, "candidates", a.folder, "--state", a.state, *args)

    dry = candidates("--delete", lost, "--dry-run")
    assert dry.returncode == 0 and f"would delete {lost}" in dry.stdout
    assert len(list_remote(server)) == 3
    refused = candidates("--delete", ours)  # the mirrored copy is no candidate
    assert refused.returncode == 1 and "not a kept candidate" in refused.stderr
    done = candidates("--delete", lost)
    assert done.returncode == 0, done.stderr
    assert contents(server) == {stranger: b"XXXX", ours: b"AAAA"}
    dismissed = candidates("--dismiss", stranger)
    assert dismissed.returncode == 0 and a.status()["possibly_ours"] == 0
    assert a.sync(server).returncode == 0
    assert contents(server) == {stranger: b"XXXX", ours: b"AAAA"}
    assert_exact(server, a)


FILES = 30


@pytest.mark.slow
def test_kill9_during_a_first_mirror_never_adopts_the_other_mirrors_files(
    server: ServerProcess, mirrors: tuple[Mirror, Mirror], tmp_path: Path
) -> None:
    """Scenario 4: `syncd run` of A is killed with kill -9 during its first mirror of 30
    files; B mirrors 30 files of the same names and sizes; A restarts. A adopts none of
    B's files: its own content is exact, and B's files are all still B's."""
    a, b = mirrors
    for i in range(FILES):
        body = "x" * (5 + i % 7)
        write(a.folder, f"d{i % 3}/f{i:02}.txt", "A" + body)
        write(b.folder, f"d{i % 3}/f{i:02}.txt", "B" + body)
    server.set_faults({"latency_ms": 400, "routes": ["create"]})
    daemon = DaemonProcess(server, a.folder, a.state, log_path=tmp_path / "a-run.log")
    with daemon:
        daemon.start()
        wait_for(lambda: server.stats()["counts"].get("create", 0) >= 10, what="10 creates")
        daemon.stop(signal.SIGKILL)
        assert daemon.proc is not None and daemon.proc.returncode == -signal.SIGKILL
        server.set_faults(None)
        assert b.sync(server).returncode == 0
        theirs = b.rows()
        daemon.start_ready()
        assert daemon.stop() == 0
    assert '"event": "reconciling"' in (tmp_path / "a-run.log").read_text()
    ours = a.rows()
    assert not set(ours.values()) & set(theirs.values())
    remote = contents(server)
    assert {remote[i] for i in theirs.values()} == {
        p.read_bytes() for p in b.folder.rglob("*") if p.is_file()
    }
    assert a.status()["possibly_ours"] == 0 and len(remote) == 2 * FILES
    assert_exact(server, a)
    assert_exact(server, b)
