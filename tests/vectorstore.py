"""Helpers for tests of syncd keeping a vector store: look at `syncd serve`'s stores over
plain HTTP (every answer validated like the server tests do), write configs, and check
that a store is exactly a folder.

    config = write_config(tmp_path, folder, vector_store="docs")
    run_syncd(server, "sync", "--config", config, "--state", state)
    assert_exact(server, folder, the_store(server)["id"])
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from apispec import validate
from serverproc import ServerProcess
from synccli import list_remote, local_files, remote_files

OUR_TAG = "syncd_owner"


def _client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + "/", headers=server.headers(), timeout=30)


def get(server: ServerProcess, path: str, schema: str, **params: Any) -> dict[str, Any]:
    """GET one answer of the server, validated with ``schema``."""
    with _client(server) as http:
        response = http.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    validate(schema, body)
    return body


def stores(server: ServerProcess) -> list[dict[str, Any]]:
    """Every vector store on the server."""
    found: list[dict[str, Any]] = []
    after: dict[str, Any] = {}
    while True:
        page = get(server, "vector_stores", "ListVectorStoresResponse", limit=100, **after)
        found += page["data"]
        if not page["has_more"]:
            return found
        after = {"after": page["last_id"]}


def the_store(server: ServerProcess) -> dict[str, Any]:
    """The one vector store on the server (fails if there are none or several)."""
    found = stores(server)
    assert len(found) == 1, f"expected one vector store, found {[s['id'] for s in found]}"
    return found[0]


def store_files(server: ServerProcess, store_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every file of a store (all pages), each validated."""
    found: list[dict[str, Any]] = []
    after: dict[str, Any] = {}
    while True:
        page = get(
            server,
            f"vector_stores/{store_id}/files",
            "ListVectorStoreFilesResponse",
            limit=100,
            **params,
            **after,
        )
        found += page["data"]
        if not page["has_more"]:
            return found
        after = {"after": page["last_id"]}


def ours(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The store files a syncd ledger attached (they carry an owner tag)."""
    return [
        f for f in files if str((f.get("attributes") or {}).get(OUR_TAG, "")).startswith("syncd-")
    ]


def by_path(files: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """syncd's attachments by their ``path`` attribute; fails on a path attached twice."""
    paths = Counter(f["attributes"]["path"] for f in ours(files))
    assert [p for p, n in paths.items() if n > 1] == [], f"a path attached twice: {paths}"
    return {f["attributes"]["path"]: f for f in ours(files)}


def write_config(tmp_path: Path, folder: Path, text: str = "", **keys: Any) -> Path:
    """A one-mirror config for ``folder`` with these keys (TOML values from Python ones)
    and ``text`` appended (rules, say)."""
    lines = ["[[mirror]]", f"folder = {json.dumps(str(folder))}"]
    for key, value in keys.items():
        lines.append(f"{key} = {_toml(value)}")
    path = tmp_path / "syncd.toml"
    path.write_text("\n".join(lines) + "\n" + text)
    return path


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def request_log(server: ServerProcess) -> list[tuple[str, str, int | None]]:
    """(method, path, status) of every request the server saw, in order."""
    return [(r["method"], r["path"], r["status"]) for r in server.stats()["requests"]]


def route_counts(server: ServerProcess) -> Counter[str]:
    return Counter(server.stats()["counts"])


def assert_exact(
    server: ServerProcess,
    folder: Path,
    store_id: str,
    *,
    attached: set[str] | None = None,
    foreign: int = 0,
) -> None:
    """The Files side equals the folder (no duplicate, no orphan) and the store holds
    exactly one completed attachment of each file (``attached``: those paths; default:
    every file), with its current remote file, its content's hash and an owner tag; plus
    ``foreign`` files attached by others."""
    local = local_files(folder)
    assert remote_files(server) == local
    assert len(list_remote(server)) == len(local), "an orphan remote file"
    current = {f["filename"]: f["id"] for f in list_remote(server)}
    files = store_files(server, store_id)
    mine = by_path(files)
    expected = set(local) if attached is None else attached
    assert set(mine) == expected
    for path, item in mine.items():
        assert item["status"] == "completed", (path, item["status"], item["last_error"])
        assert item["id"] == current[path], f"{path}: not its current remote file"
        assert item["attributes"]["sha256"] == hashlib.sha256(local[path]).hexdigest()
    assert len(files) - len(mine) == foreign
