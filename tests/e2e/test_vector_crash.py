"""kill -9 at every durable step of keeping a vector store (SYNCD_CRASH_AT=vector.*):
creating the store, attaching (a batch, a single file), retiring an old version and
detaching a deleted file, also when the old version was kept behind a new one that
failed indexing. The next `syncd sync` converges: one store, each file attached
once with its current content, the Files side exactly the folder (no duplicate, no
orphan), and a file someone else attached still there."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from conftest import ServerFactory
from serverproc import ServerProcess
from synccli import run_syncd, upload_directly, write
from vectorstore import assert_exact, stores, the_store, write_config

SCENARIOS = [
    ("new", "vector.store_intent"),
    ("new", "vector.attach_intent"),
    ("new", "vector.attached"),
    ("replace", "vector.attach_intent"),
    ("replace", "vector.attached"),
    ("replace", "vector.detach_intent"),
    ("replace", "vector.detached"),
    ("delete", "vector.detach_intent"),
    ("delete", "vector.detached"),
    # The new version failed indexing (invalid_file), so the old one kept serving; then
    # the file is fixed, or deleted. The first detach is the failed version's (its File
    # is deleted, detaching first), the second the kept old version's.
    ("fix_failed", "vector.detach_intent"),
    ("fix_failed", "vector.detached"),
    ("fix_failed", "vector.detach_intent:2"),
    ("fix_failed", "vector.detached:2"),
    ("delete_failed", "vector.detach_intent:2"),
    ("delete_failed", "vector.detached:2"),
]


@pytest.fixture
def vserver(server_factory: ServerFactory) -> ServerProcess:
    return server_factory(extra_args=["--index-delay", "0.2"])


def attach_foreign(server: ServerProcess, store_id: str) -> str:
    """A file someone else attached to the store (no owner tag)."""
    file_id = upload_directly(server, "foreign.md", b"someone else's")
    response = httpx.post(
        f"{server.base_url}/vector_stores/{store_id}/files",
        headers=server.headers(),
        json={"file_id": file_id, "attributes": {"path": "target.md"}},
    )
    assert response.status_code == 200, response.text
    return file_id


@pytest.mark.parametrize(("scenario", "step"), SCENARIOS)
def test_kill9_at_a_vector_step_converges(
    vserver: ServerProcess, tmp_path: Path, scenario: str, step: str
) -> None:
    """The crashed run dies by SIGKILL at the step; the next run leaves store == folder."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "keep.md", "keep")
    write(folder, "other.md", "other")
    write(folder, "target.md", "version one")
    config = write_config(tmp_path, folder, vector_store="docs")
    base = ("sync", "--config", config, "--state", state, "--concurrency", "1")
    foreign: str | None = None
    if scenario != "new":
        assert run_syncd(vserver, *base).returncode == 0
        foreign = attach_foreign(vserver, the_store(vserver)["id"])
        if scenario.endswith("_failed"):
            write(folder, "target.md", b"\x80 not text: fails indexing\n")
            assert run_syncd(vserver, *base).returncode == 1
        if scenario in ("replace", "fix_failed"):
            write(folder, "target.md", "version two, longer")
        else:
            (folder / "target.md").unlink()
    crashed = run_syncd(vserver, *base, env={"SYNCD_CRASH_AT": step})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    after = run_syncd(vserver, *base)
    assert after.returncode == 0, after.stderr
    assert len(stores(vserver)) == 1, "a second store"
    store_id = the_store(vserver)["id"]
    if foreign is not None:
        # Still attached (a 404 here would fail the test); then out of the way of the
        # folder check, since it is a File too.
        httpx.delete(
            f"{vserver.base_url}/vector_stores/{store_id}/files/{foreign}",
            headers=vserver.headers(),
        ).raise_for_status()
        httpx.delete(
            f"{vserver.base_url}/files/{foreign}", headers=vserver.headers()
        ).raise_for_status()
    assert_exact(vserver, folder, store_id)
