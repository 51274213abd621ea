"""`syncd sync` keeping a vector store exact, against `syncd serve` with an indexing delay:
new, changed and deleted files, attributes changed in the config, files others attached,
indexing failures and stalls (the deadline), a store that does not exist or vanished,
lost answers; every answer validated (tests/vectorstore.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerFactory
from serverproc import REPO_ROOT, ServerProcess, clean_env
from synccli import list_remote, run_syncd, upload_directly, write
from vectorstore import (
    assert_exact,
    by_path,
    request_log,
    route_counts,
    store_files,
    stores,
    the_store,
    write_config,
)

INDEX_DELAY = "0.2"


@pytest.fixture
def vserver(server_factory: ServerFactory) -> ServerProcess:
    """`syncd serve` indexing each file in 0.2 s."""
    return server_factory(extra_args=["--index-delay", INDEX_DELAY])


def sync(server: ServerProcess, config: Path, state: Path, *args: str) -> Any:
    return run_syncd(server, "sync", "--config", config, "--state", state, *args)


def docs(folder: Path, count: int = 3) -> None:
    for i in range(count):
        write(folder, f"doc{i}.md", f"# document {i}\n")


def test_folder_mirrored_into_a_new_store(vserver: ServerProcess, tmp_path: Path) -> None:
    """A name: one store created (owner tag and nonce in its metadata), every file in one
    batch with the config's attributes and chunking plus path/sha256/owner; a second
    sync changes nothing."""
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 5)
    write(folder, "sub/notes.txt", "notes")
    config = write_config(
        tmp_path,
        folder,
        vector_store="docs",
        attributes={"team": "docs", "level": 2},
        chunking={"max_tokens": 400, "overlap": 200},
    )
    result = sync(vserver, config, state)
    assert result.returncode == 0, result.stderr
    store = the_store(vserver)
    assert store["name"] == "docs" and store["file_counts"]["completed"] == 6
    assert set(store["metadata"]) == {"syncd_owner", "syncd_nonce"}
    assert_exact(vserver, folder, store["id"])
    for path, item in by_path(store_files(vserver, store["id"])).items():
        assert item["attributes"]["team"] == "docs" and item["attributes"]["level"] == 2
        assert item["attributes"]["syncd_owner"] == store["metadata"]["syncd_owner"]
        assert item["chunking_strategy"]["static"] == {
            "max_chunk_size_tokens": 400,
            "chunk_overlap_tokens": 200,
        }, path
    counts = route_counts(vserver)
    assert counts["vs_batch_create"] == 1 and counts["vs_file_create"] == 0
    assert counts["vs_create"] == 1 and counts["vs_file_update"] == 0
    assert "completed" in result.stderr and "6 completed, 0 in progress, 0 failed" in result.stderr
    before = route_counts(vserver)
    again = sync(vserver, config, state)
    assert again.returncode == 0, again.stderr
    after = route_counts(vserver)
    for route in ("create", "vs_create", "vs_batch_create", "vs_file_create", "vs_file_update"):
        assert after[route] == before[route], route
    assert_exact(vserver, folder, store["id"])


def test_a_batch_finishing_file_by_file_is_polled_without_rewrites(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """Files of one batch completing one after another (one indexing worker): the polls
    record each completion and send nothing back (no attribute update, no re-attach)."""
    serial = server_factory(extra_args=["--index-delay", "0.7", "--index-workers", "1"])
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 4)
    result = sync(serial, write_config(tmp_path, folder, vector_store="docs"), state)
    assert result.returncode == 0, result.stderr
    counts = route_counts(serial)
    assert counts["vs_batch_create"] == 1 and counts["vs_batch_retrieve"] >= 3
    assert counts["vs_file_update"] == 0 and counts["vs_file_create"] == 0
    assert_exact(serial, folder, the_store(serial)["id"])


def test_one_new_file_is_attached_on_its_own(vserver: ServerProcess, tmp_path: Path) -> None:
    """A single new file goes through POST .../files, not a batch; --vector-store works
    without a config file."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "only.md", "alone")
    result = run_syncd(vserver, "sync", folder, "--state", state, "--vector-store", "solo")
    assert result.returncode == 0, result.stderr
    assert route_counts(vserver)["vs_file_create"] == 1
    assert route_counts(vserver)["vs_batch_create"] == 0
    assert_exact(vserver, folder, the_store(vserver)["id"])


def test_changed_file_is_never_missing_from_the_store(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A changed file: the new version is attached and indexed before the old one is
    detached and deleted; watched all along, the store always holds the path completed."""
    slow = server_factory(extra_args=["--index-delay", "1.5"])
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.md", "version one")
    write(folder, "b.md", "stays")
    config = write_config(tmp_path, folder, vector_store="docs")
    assert sync(slow, config, state).returncode == 0
    store_id = the_store(slow)["id"]
    old_id = by_path(store_files(slow, store_id))["a.md"]["id"]
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            completed = store_files(slow, store_id, filter="completed")
            seen.append(sum(1 for f in completed if f["attributes"]["path"] == "a.md"))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        write(folder, "a.md", "version two, longer")
        result = sync(slow, config, state)
    finally:
        done.set()
        watcher.join()
    assert result.returncode == 0, result.stderr
    assert seen and min(seen) >= 1, f"the store lacked a.md at some moment: {seen}"
    assert_exact(slow, folder, store_id)
    log = request_log(slow)
    detach = log.index(("DELETE", f"/v1/vector_stores/{store_id}/files/{old_id}", 200))
    delete = log.index(("DELETE", f"/v1/files/{old_id}", 200))
    assert detach < delete
    new_attach = max(i for i, (m, p, _) in enumerate(log) if m == "POST" and p.endswith("/files"))
    assert new_attach < detach


def test_deleted_file_is_detached_then_deleted(vserver: ServerProcess, tmp_path: Path) -> None:
    """A deleted file leaves the store first (DELETE .../files/{id}), then the Files API."""
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 3)
    config = write_config(tmp_path, folder, vector_store="docs")
    assert sync(vserver, config, state).returncode == 0
    store_id = the_store(vserver)["id"]
    gone = by_path(store_files(vserver, store_id))["doc1.md"]["id"]
    (folder / "doc1.md").unlink()
    result = sync(vserver, config, state)
    assert result.returncode == 0, result.stderr
    log = request_log(vserver)
    detach = log.index(("DELETE", f"/v1/vector_stores/{store_id}/files/{gone}", 200))
    assert detach < log.index(("DELETE", f"/v1/files/{gone}", 200))
    assert_exact(vserver, folder, store_id)


def test_attribute_change_in_the_config_is_updated_in_place(
    vserver: ServerProcess, tmp_path: Path
) -> None:
    """New attributes in the config: POST .../files/{id} for each file, no upload, no
    attach; a rule's attributes win over the mirror's."""
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 3)
    write(folder, "hr/policy.md", "policy")
    rule = '[[mirror.rules]]\nglob = "hr/**"\npurpose = "user_data"\nattributes = { team = "hr" }\n'
    config = write_config(tmp_path, folder, rule, vector_store="docs", attributes={"team": "a"})
    assert sync(vserver, config, state).returncode == 0
    store_id = the_store(vserver)["id"]
    before = route_counts(vserver)
    config = write_config(
        tmp_path, folder, rule, vector_store="docs", attributes={"team": "b", "year": 2025}
    )
    result = sync(vserver, config, state)
    assert result.returncode == 0, result.stderr
    after = route_counts(vserver)
    assert after["vs_file_update"] - before["vs_file_update"] == 4
    for route in ("create", "delete", "vs_batch_create", "vs_file_create", "vs_file_delete"):
        assert after[route] == before[route], route
    attached = by_path(store_files(vserver, store_id))
    assert {p: (f["attributes"]["team"], f["attributes"]["year"]) for p, f in attached.items()} == {
        "doc0.md": ("b", 2025),
        "doc1.md": ("b", 2025),
        "doc2.md": ("b", 2025),
        "hr/policy.md": ("hr", 2025),
    }
    assert_exact(vserver, folder, store_id)


def test_files_others_attached_are_listed_and_never_touched(
    vserver: ServerProcess, tmp_path: Path
) -> None:
    """Files attached to the same store without our owner tag (or with another ledger's)
    survive every sync, even one that deletes all of ours, and `ls --vector-store` marks
    them as someone else's."""
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 2)
    config = write_config(tmp_path, folder, vector_store="docs")
    assert sync(vserver, config, state).returncode == 0
    store_id = the_store(vserver)["id"]
    strangers = []
    for name, attributes in (
        ("theirs.md", {"path": "doc0.md"}),
        ("other-syncd.md", {"path": "doc1.md", "syncd_owner": "syncd-someoneelse"}),
    ):
        file_id = upload_directly(vserver, name, b"not yours")
        response = httpx.post(
            f"{vserver.base_url}/vector_stores/{store_id}/files",
            headers=vserver.headers(),
            json={"file_id": file_id, "attributes": attributes},
        )
        assert response.status_code == 200, response.text
        strangers.append(file_id)
    listed = run_syncd(
        vserver, "ls", "--folder", folder, "--state", state, "--vector-store", "--json"
    )
    assert listed.returncode == 0, listed.stderr
    entries = {e["id"]: e for e in json.loads(listed.stdout)[store_id]}
    assert entries[strangers[0]]["attached_by"] == "someone else"
    assert entries[strangers[1]]["attached_by"] == "another syncd ledger"
    assert sum(1 for e in entries.values() if e["owned"]) == 2
    for path in folder.iterdir():
        path.unlink()
    result = sync(vserver, config, state, "--max-delete", "10")
    assert result.returncode == 0, result.stderr
    left = {f["id"] for f in store_files(vserver, store_id)}
    assert left == set(strangers)
    assert not [
        p
        for m, p, _ in request_log(vserver)
        if m in ("DELETE", "POST") and any(s in p for s in strangers)
    ]


def test_indexing_failure_is_a_per_file_failure(vserver: ServerProcess, tmp_path: Path) -> None:
    """A file whose indexing fails is named with its reason (sync exit 1, status), the
    others are attached; an unsupported type is not retried, a server error is, at once
    by the next sync."""
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 2)
    write(folder, "bad.md", "fails")
    write(folder, "table.jsonl", '{"a": 1}\n')
    vserver.set_faults({"indexing": {"fail_names": ["bad.md"], "failure_code": "server_error"}})
    config = write_config(tmp_path, folder, vector_store="docs")
    result = sync(vserver, config, state)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "failed: bad.md: vector store 'docs': indexing failed: server_error" in result.stderr
    assert (
        "failed: table.jsonl: vector store 'docs': indexing failed: unsupported_file"
        in result.stderr
    )
    assert "not retried until the file changes" in result.stderr
    status = run_syncd(None, "status", "--config", config, "--state", state, "--json")
    (store,) = json.loads(status.stdout)["vector_stores"]
    problems = {p["path"]: p for p in store["problems"]}
    assert (
        problems["bad.md"]["permanent"] is False and "server_error" in problems["bad.md"]["reason"]
    )
    assert problems["table.jsonl"]["permanent"] is True
    assert store["completed"] == 2 and store["failed"] == 2
    text = run_syncd(None, "status", "--config", config, "--state", state)
    assert "bad.md: indexing failed: server_error" in text.stdout
    vserver.set_faults(None)
    before = route_counts(vserver)
    again = sync(vserver, config, state)
    assert again.returncode == 1  # table.jsonl stays unsupported
    assert "failed: bad.md" not in again.stderr
    assert route_counts(vserver)["vs_file_delete"] - before["vs_file_delete"] == 1  # bad.md
    store_id = the_store(vserver)["id"]
    attached = by_path(store_files(vserver, store_id))
    assert attached["bad.md"]["status"] == "completed"
    assert attached["table.jsonl"]["status"] == "failed"


def test_a_stall_past_the_deadline_is_a_failure_then_retried(
    vserver: ServerProcess, tmp_path: Path
) -> None:
    """A file that stays in_progress past indexing_deadline: sync stops waiting at the
    deadline (no endless poll) and names it; once indexing works again the next sync
    detaches and attaches it again."""
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 2)
    write(folder, "slow.md", "stuck")
    vserver.set_faults({"indexing": {"stall_names": ["slow.md"]}})
    config = write_config(tmp_path, folder, vector_store="docs", indexing_deadline=2)
    started = time.monotonic()
    result = sync(vserver, config, state)
    took = time.monotonic() - started
    assert result.returncode == 1
    assert "failed: slow.md: vector store 'docs': still indexing after 2 s" in result.stderr
    assert took < 20, f"sync waited {took:.1f} s for a 2 s deadline"
    vserver.set_faults(None)
    again = sync(vserver, config, state)
    assert again.returncode == 0, again.stderr
    assert_exact(vserver, folder, the_store(vserver)["id"])


def test_a_store_id_that_does_not_exist(vserver: ServerProcess, tmp_path: Path) -> None:
    """vector_store_id naming no store: one clear line naming it, the Files still mirrored."""
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 2)
    config = write_config(tmp_path, folder, vector_store_id="vs_doesnotexist")
    result = sync(vserver, config, state)
    assert result.returncode == 1
    assert "vector store vs_doesnotexist: does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert stores(vserver) == []
    assert (
        len(
            json.loads(
                run_syncd(None, "status", "--config", config, "--state", state, "--json").stdout
            )["vector_stores"]
        )
        == 1
    )


def test_an_existing_store_given_by_id(vserver: ServerProcess, tmp_path: Path) -> None:
    """vector_store_id: the files go into that store, none is created; its expires_after
    is warned about by sync and shown by status with the expiry."""
    made = httpx.post(
        f"{vserver.base_url}/vector_stores",
        headers=vserver.headers(),
        json={"name": "mine", "expires_after": {"anchor": "last_active_at", "days": 7}},
    )
    store_id = made.json()["id"]
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 2)
    config = write_config(tmp_path, folder, vector_store_id=store_id)
    result = sync(vserver, config, state)
    assert result.returncode == 0, result.stderr
    assert f"warning: vector store {store_id} expires 7 days after its last activity" in (
        result.stderr
    )
    assert [s["id"] for s in stores(vserver)] == [store_id]
    assert_exact(vserver, folder, store_id)
    status = run_syncd(None, "status", "--config", config, "--state", state, "--json")
    (shown,) = json.loads(status.stdout)["vector_stores"]
    assert shown["id"] == store_id and shown["completed"] == 2
    assert shown["expires_after_days"] == 7 and shown["expires_at"] > time.time() + 6 * 86400
    assert shown["usage_bytes"] == sum(len(p.read_bytes()) for p in folder.iterdir())
    text = run_syncd(None, "status", "--config", config, "--state", state).stdout
    assert "warning: the store expires 7 days after its last activity" in text


def test_store_deleted_under_syncds_feet(vserver: ServerProcess, tmp_path: Path) -> None:
    """The store syncd made was deleted: the next sync says so, makes a new one and
    attaches every file again."""
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 3)
    config = write_config(tmp_path, folder, vector_store="docs")
    assert sync(vserver, config, state).returncode == 0
    old = the_store(vserver)["id"]
    assert (
        httpx.delete(
            f"{vserver.base_url}/vector_stores/{old}", headers=vserver.headers()
        ).status_code
        == 200
    )
    result = sync(vserver, config, state)
    assert result.returncode == 0, result.stderr
    assert (
        f"vector store {old} ('docs'), which syncd created, was deleted outside syncd"
        in result.stderr
    )
    new = the_store(vserver)["id"]
    assert new != old
    assert_exact(vserver, folder, new)


def test_lost_answers_converge_without_duplicates(vserver: ServerProcess, tmp_path: Path) -> None:
    """Answers lost after the server acted (store create, batches, single attaches, detaches):
    one store, each file attached once, the Files side exact."""
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 6)
    vserver.set_faults(
        {
            "seed": 4,
            "lost_answer_rate": 0.6,
            "routes": ["vs_create", "vs_batch_create", "vs_file_create", "vs_file_update"],
        }
    )
    config = write_config(tmp_path, folder, vector_store="docs")
    first = sync(vserver, config, state)
    assert "Traceback" not in first.stderr
    write(folder, "doc0.md", "changed")
    second = sync(vserver, config, state)
    assert "Traceback" not in second.stderr
    lost = [r for r in vserver.stats()["requests"] if r["fault"] == "lost_answer"]
    assert {r["route"] for r in lost} >= {"vs_create", "vs_batch_create"}, "no answer was lost"
    vserver.set_faults(None)
    final = sync(vserver, config, state)
    assert final.returncode == 0, final.stderr
    assert_exact(vserver, folder, the_store(vserver)["id"])


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"vector_store": "d", "attributes": {f"k{i}": 1 for i in range(14)}},
            "at most 13 attributes",
        ),
        ({"vector_store": "d", "attributes": {"a": "x" * 600}}, "at most 512 characters, not 600"),
        ({"vector_store": "d", "chunking": {"max_tokens": 5000, "overlap": 10}}, "not 5000"),
        ({"vector_store": "d", "chunking": {"max_tokens": 800, "overlap": 500}}, "more than half"),
        ({"vector_store_id": "docs"}, "expected a vector store id like 'vs_abc123'"),
    ],
)
def test_bad_vector_config_is_one_line(
    vserver: ServerProcess, tmp_path: Path, keys: dict[str, Any], message: str
) -> None:
    """Out-of-range attributes or chunking, a bad id: exit 2, one line, nothing sent."""
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 1)
    result = sync(vserver, write_config(tmp_path, folder, **keys), state)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert route_counts(vserver)["create"] == 0


def test_ctrl_c_stops_the_wait_and_says_what_is_left(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """SIGINT while sync waits for indexing: it stops at once, names what is still
    indexing, exits 1; the next sync carries on from the ledger (no second attach)."""
    slow = server_factory(extra_args=["--index-delay", "6"])
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 3)
    config = write_config(tmp_path, folder, vector_store="docs")
    argv = [sys.executable, "-m", "syncd", "sync", "--config", str(config), "--state", str(state)]
    proc = subprocess.Popen(
        [*argv, "--base-url", slow.base_url],
        env=clean_env({"OPENAI_API_KEY": slow.client_key}),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while route_counts(slow)["vs_batch_retrieve"] < 2:  # polled twice: it is waiting
            assert time.monotonic() < deadline and proc.poll() is None, "sync never waited"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - stopped < 5
    assert proc.returncode == 1, stderr
    assert "stopped waiting: 3 files still indexing in vector store 'docs'" in stderr
    assert "Traceback" not in stderr
    again = sync(slow, config, state)
    assert again.returncode == 0, again.stderr
    assert route_counts(slow)["vs_batch_create"] == 1
    assert_exact(slow, folder, the_store(slow)["id"])


def test_attach_refused_by_a_failing_server_is_retried_later(
    vserver: ServerProcess, tmp_path: Path
) -> None:
    """Every batch attach answered 503: sync does not wait out the backoff, names the
    files, exits 1; once the server works the next sync settles the intents by listing
    and attaches them."""
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 3)
    vserver.set_faults({"error_rate": 1.0, "error_statuses": [503], "routes": ["vs_batch_create"]})
    config = write_config(tmp_path, folder, vector_store="docs")
    started = time.monotonic()
    result = sync(vserver, config, state)
    assert result.returncode == 1
    assert time.monotonic() - started < 60
    assert "failed: doc0.md: vector store 'docs': attach request failed" in result.stderr
    assert "retried with backoff" in result.stderr
    vserver.set_faults(None)
    again = sync(vserver, config, state)
    assert again.returncode == 0, again.stderr
    assert_exact(vserver, folder, the_store(vserver)["id"])


def test_verify_does_not_count_the_old_version_a_store_still_serves(
    vserver: ServerProcess, tmp_path: Path
) -> None:
    """A changed file whose new version is still indexing: its old version stays stored
    and attached (the store never lacks the content). `syncd verify` says so and does not
    count it as a second remote file; once indexed, the next sync deletes it."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.md", "# first version\n")
    config = write_config(tmp_path, folder, vector_store="docs", indexing_deadline=2)
    assert sync(vserver, config, state).returncode == 0
    vserver.set_faults({"indexing": {"stall_names": ["a.md"]}})
    write(folder, "a.md", "# second version, still indexing\n")
    assert sync(vserver, config, state).returncode == 1
    checked = run_syncd(vserver, "verify", folder, "--config", config, "--state", state)
    assert checked.returncode == 0, checked.stderr
    assert "1 old versions kept in the vector store until their new versions" in checked.stderr
    assert "second remote file" not in checked.stderr + checked.stdout
    vserver.set_faults(None)
    assert sync(vserver, config, state).returncode == 0
    assert_exact(vserver, folder, the_store(vserver)["id"])
    after = run_syncd(vserver, "verify", folder, "--config", config, "--state", state)
    assert after.returncode == 0 and "old versions kept" not in after.stderr, after.stderr


def test_dry_run_shows_the_vector_store_actions_and_sends_none(
    vserver: ServerProcess, tmp_path: Path
) -> None:
    """--dry-run names the store it would create and each attach and detach beside the
    Files actions; no store is created, nothing attached."""
    folder, state = tmp_path / "data", tmp_path / "state"
    docs(folder, 2)
    config = write_config(tmp_path, folder, vector_store="docs")
    dry = sync(vserver, config, state, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "create   'docs'" in dry.stdout
    assert "attach   doc0.md  (to vector store 'docs' once uploaded)" in dry.stdout
    assert stores(vserver) == []
    assert sync(vserver, config, state).returncode == 0
    (folder / "doc1.md").unlink()
    dry = sync(vserver, config, state, "--dry-run")
    assert "detach   doc1.md  (from 'docs', before its file is deleted)" in dry.stdout
    assert "create" not in dry.stdout and "attach   doc0.md" not in dry.stdout
    assert len(store_files(vserver, the_store(vserver)["id"])) == 2


# How a changed file's new version is made to fail indexing: by its content (text that is
# neither UTF-8 nor UTF-16), by fault injection (an unsupported type), or by stalling past
# indexing_deadline (retryable: the next sync attaches it again, and it stalls again).
BAD_VERSIONS = {
    "invalid_file": (None, b"\x80\x81 not text at all\n"),
    "unsupported_file": (
        {"indexing": {"fail_names": ["a.md"], "failure_code": "unsupported_file"}},
        b"# second version\n",
    ),
    "stall": ({"indexing": {"stall_names": ["a.md"]}}, b"# second version, stuck\n"),
}


def _remote_exists(server: ServerProcess, file_id: str) -> bool:
    response = httpx.get(f"{server.base_url}/files/{file_id}", headers=server.headers())
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


def _mine(server: ServerProcess, store_id: str) -> dict[str, dict[str, Any]]:
    """syncd's attachments by file id (not by path: a path may have two versions)."""
    files = store_files(server, store_id)
    return {f["id"]: f for f in files if "syncd_owner" in (f.get("attributes") or {})}


def _assert_old_serves(
    server: ServerProcess, store_id: str, old_id: str, new_id: str, reason: str
) -> None:
    """The old version is still attached and completed (and stored); the new one is
    attached beside it, not completed."""
    attached = _mine(server, store_id)
    assert attached[old_id]["status"] == "completed", attached[old_id]
    assert attached[old_id]["attributes"]["path"] == "a.md"
    assert _remote_exists(server, old_id), "the old version's File was deleted"
    assert new_id in attached and attached[new_id]["status"] != "completed", attached
    if reason != "stall":
        assert attached[new_id]["last_error"]["code"] == reason


@pytest.mark.parametrize("reason", sorted(BAD_VERSIONS))
def test_a_new_version_that_fails_indexing_leaves_the_old_one_serving(
    vserver: ServerProcess, tmp_path: Path, reason: str
) -> None:
    """A changed file whose new version fails indexing (for good, or by stalling past
    the deadline): the old version stays attached, completed and stored, the failure is
    reported (sync exit 1, status); a sync with no change keeps it so (a permanent
    failure is not retried). Once the file is fixed, the new version completes and only
    then is the old one detached and deleted."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.md", "# first version\n")
    write(folder, "b.md", "stays")
    config = write_config(tmp_path, folder, vector_store="docs", indexing_deadline=2)
    assert sync(vserver, config, state).returncode == 0
    store_id = the_store(vserver)["id"]
    old_id = by_path(store_files(vserver, store_id))["a.md"]["id"]
    faults, content = BAD_VERSIONS[reason]
    vserver.set_faults(faults)
    write(folder, "a.md", content)
    result = sync(vserver, config, state)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    why = "still indexing after 2 s" if reason == "stall" else f"indexing failed: {reason}"
    assert f"failed: a.md: vector store 'docs': {why}" in result.stderr
    assert "the previous version stays in the store until a new one is indexed" in result.stderr
    assert _remote_exists(vserver, old_id), "the old version's File was deleted"
    (new_id,) = [
        f["id"] for f in list_remote(vserver) if f["filename"] == "a.md" and f["id"] != old_id
    ]
    _assert_old_serves(vserver, store_id, old_id, new_id, reason)
    status = run_syncd(None, "status", "--config", config, "--state", state, "--json")
    (store,) = json.loads(status.stdout)["vector_stores"]
    (problem,) = store["problems"]
    assert problem["path"] == "a.md" and why in problem["reason"]
    assert problem["permanent"] is (reason != "stall")
    assert store["old_versions"] == 1 and store["completed"] == 1 and store["failed"] == 1
    text = run_syncd(None, "status", "--config", config, "--state", state)
    assert f"a.md: {why}" in text.stdout
    assert "1 old versions kept until their successor is indexed" in text.stdout
    checked = run_syncd(vserver, "verify", folder, "--config", config, "--state", state)
    assert checked.returncode == 0, checked.stderr
    assert "1 old versions kept in the vector store" in checked.stderr

    before = route_counts(vserver)
    again = sync(vserver, config, state)  # nothing changed locally
    assert again.returncode == 1, again.stderr
    after = route_counts(vserver)
    if reason != "stall":  # not retried until the file changes
        for route in ("create", "delete", "vs_file_create", "vs_batch_create", "vs_file_delete"):
            assert after[route] == before[route], route
    _assert_old_serves(vserver, store_id, old_id, new_id, reason)

    vserver.set_faults(None)
    write(folder, "a.md", "# third version, valid\n")
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:  # the store holds a.md completed at every moment
        while not done.is_set():
            completed = store_files(vserver, store_id, filter="completed")
            seen.append(sum(1 for f in completed if f["attributes"]["path"] == "a.md"))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        fixed = sync(vserver, config, state)
    finally:
        done.set()
        watcher.join()
    assert fixed.returncode == 0, fixed.stderr
    assert seen and min(seen) >= 1, f"the store lacked a.md at some moment: {seen}"
    assert not _remote_exists(vserver, old_id) and not _remote_exists(vserver, new_id)
    assert old_id not in _mine(vserver, store_id)
    assert_exact(vserver, folder, store_id)
    log = request_log(vserver)
    new_attach = max(i for i, (m, p, _) in enumerate(log) if m == "POST" and p.endswith("/files"))
    detach = log.index(("DELETE", f"/v1/vector_stores/{store_id}/files/{old_id}", 200))
    assert new_attach < detach < log.index(("DELETE", f"/v1/files/{old_id}", 200))
    status = run_syncd(None, "status", "--config", config, "--state", state, "--json")
    (store,) = json.loads(status.stdout)["vector_stores"]
    assert store["problems"] == [] and store["old_versions"] == 0


def test_a_failed_new_version_changed_again_or_deleted(
    vserver: ServerProcess, tmp_path: Path
) -> None:
    """The old version kept behind a failed one: a second bad version replaces the failed
    one (detached and deleted at once, it serves nothing) while the old one keeps
    serving; deleting the file then detaches and deletes every version, nothing left."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.md", "# first version\n")
    write(folder, "b.md", "stays")
    config = write_config(tmp_path, folder, vector_store="docs")
    assert sync(vserver, config, state).returncode == 0
    store_id = the_store(vserver)["id"]
    old_id = by_path(store_files(vserver, store_id))["a.md"]["id"]
    write(folder, "a.md", b"\x80 bad one\n")
    assert sync(vserver, config, state).returncode == 1
    (bad_one,) = [
        f["id"] for f in list_remote(vserver) if f["filename"] == "a.md" and f["id"] != old_id
    ]
    write(folder, "a.md", b"\x80 bad two, longer\n")
    result = sync(vserver, config, state)
    assert result.returncode == 1, result.stderr
    assert "indexing failed: invalid_file" in result.stderr
    assert not _remote_exists(vserver, bad_one) and bad_one not in _mine(vserver, store_id)
    (bad_two,) = [
        f["id"] for f in list_remote(vserver) if f["filename"] == "a.md" and f["id"] != old_id
    ]
    _assert_old_serves(vserver, store_id, old_id, bad_two, "invalid_file")
    (folder / "a.md").unlink()
    gone = sync(vserver, config, state)
    assert gone.returncode == 0, gone.stderr
    assert not _remote_exists(vserver, old_id) and not _remote_exists(vserver, bad_two)
    assert_exact(vserver, folder, store_id)
    log = request_log(vserver)
    for file_id in (old_id, bad_two):
        detach = log.index(("DELETE", f"/v1/vector_stores/{store_id}/files/{file_id}", 200))
        assert detach < log.index(("DELETE", f"/v1/files/{file_id}", 200))
    status = run_syncd(None, "status", "--config", config, "--state", state, "--json")
    (store,) = json.loads(status.stdout)["vector_stores"]
    assert store["problems"] == [] and store["old_versions"] == 0
