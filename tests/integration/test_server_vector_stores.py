"""`syncd serve`'s vector stores over plain HTTP: stores, store files, batches, the limits,
indexing (delay, unsupported and undecodable files, injected failures and stalls), and
deleting a File removing it from every store. Every answer is validated with our
schemas, the SDK's models and, where present, the published spec."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from apispec import validate
from conftest import ServerFactory
from serverproc import ServerProcess

INDEX_DELAY = 0.3
DEADLINE = 15.0


@pytest.fixture
def vserver(server_factory: ServerFactory) -> ServerProcess:
    """A `syncd serve` that indexes each vector store file in INDEX_DELAY seconds."""
    return server_factory(extra_args=["--index-delay", str(INDEX_DELAY)])


@pytest.fixture
def http(vserver: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=vserver.base_url + "/", headers=vserver.headers(), timeout=30
    ) as client:
        yield client


def ok(response: httpx.Response, schema: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    validate(schema, body)
    return body


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    validate("ErrorResponse", body)
    found: dict[str, Any] = body["error"]
    return found


def upload(http: httpx.Client, name: str, content: bytes, purpose: str = "user_data") -> str:
    response = http.post("files", data={"purpose": purpose}, files={"file": (name, content)})
    return str(ok(response, "OpenAIFile")["id"])


def new_store(http: httpx.Client, **body: Any) -> dict[str, Any]:
    return ok(http.post("vector_stores", json=body), "VectorStoreObject")


def store_file(http: httpx.Client, store: str, file_id: str) -> dict[str, Any]:
    return ok(http.get(f"vector_stores/{store}/files/{file_id}"), "VectorStoreFileObject")


def poll(check: Callable[[], bool], what: str) -> None:
    """Wait (with a deadline) until ``check()`` holds."""
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def status_of(http: httpx.Client, store: str, file_id: str) -> str:
    return str(store_file(http, store, file_id)["status"])


def test_store_lifecycle(http: httpx.Client) -> None:
    """Create, retrieve, list and delete a store; counts and usage follow its files."""
    store = new_store(http, name="docs", metadata={"team": "a"})
    assert store["name"] == "docs" and store["metadata"] == {"team": "a"}
    assert store["file_counts"]["total"] == 0 and store["status"] == "completed"
    file_id = upload(http, "a.txt", b"hello world")
    attached = ok(
        http.post(f"vector_stores/{store['id']}/files", json={"file_id": file_id}),
        "VectorStoreFileObject",
    )
    assert attached["status"] == "in_progress" and attached["usage_bytes"] == 0
    busy = ok(http.get(f"vector_stores/{store['id']}"), "VectorStoreObject")
    assert busy["status"] == "in_progress" and busy["file_counts"]["in_progress"] == 1
    poll(lambda: status_of(http, store["id"], file_id) == "completed", "indexing")
    done = ok(http.get(f"vector_stores/{store['id']}"), "VectorStoreObject")
    assert done["file_counts"] == {
        "in_progress": 0,
        "completed": 1,
        "failed": 0,
        "cancelled": 0,
        "total": 1,
    }
    assert done["usage_bytes"] == 11 and done["status"] == "completed"
    listed = ok(http.get("vector_stores"), "ListVectorStoresResponse")
    assert [s["id"] for s in listed["data"]] == [store["id"]]
    deleted = ok(http.delete(f"vector_stores/{store['id']}"), "DeleteVectorStoreResponse")
    assert deleted == {"id": store["id"], "object": "vector_store.deleted", "deleted": True}
    error(http.get(f"vector_stores/{store['id']}"), 404)
    ok(http.get(f"files/{file_id}"), "OpenAIFile")  # the File itself stays


def test_expires_after_is_shown_and_bounded(http: httpx.Client) -> None:
    """expires_after (last_active_at, 1-365 days) is answered with expires_at; bad ones 400."""
    store = new_store(http, expires_after={"anchor": "last_active_at", "days": 7})
    assert store["expires_after"] == {"anchor": "last_active_at", "days": 7}
    assert store["expires_at"] == store["last_active_at"] + 7 * 86400
    for bad in ({"anchor": "created_at", "days": 7}, {"anchor": "last_active_at", "days": 0}):
        assert error(http.post("vector_stores", json={"expires_after": bad}), 400)["param"] == (
            "expires_after"
        )


def test_attach_update_detach(http: httpx.Client) -> None:
    """Attributes and a static chunking strategy are kept; attributes update in place;
    a detached file is gone from the store (a second detach is a 404), the File stays."""
    store = new_store(http)["id"]
    file_id = upload(http, "b.md", b"# title\n")
    chunking = {
        "type": "static",
        "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 100},
    }
    attached = ok(
        http.post(
            f"vector_stores/{store}/files",
            json={
                "file_id": file_id,
                "attributes": {"path": "b.md", "n": 2, "x": True},
                "chunking_strategy": chunking,
            },
        ),
        "VectorStoreFileObject",
    )
    assert attached["attributes"] == {"path": "b.md", "n": 2, "x": True}
    assert attached["chunking_strategy"] == chunking
    updated = ok(
        http.post(f"vector_stores/{store}/files/{file_id}", json={"attributes": {"path": "c.md"}}),
        "VectorStoreFileObject",
    )
    assert updated["attributes"] == {"path": "c.md"}
    assert store_file(http, store, file_id)["attributes"] == {"path": "c.md"}
    gone = ok(
        http.delete(f"vector_stores/{store}/files/{file_id}"), "DeleteVectorStoreFileResponse"
    )
    assert gone == {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}
    error(http.delete(f"vector_stores/{store}/files/{file_id}"), 404)
    error(http.get(f"vector_stores/{store}/files/{file_id}"), 404)
    ok(http.get(f"files/{file_id}"), "OpenAIFile")


def test_auto_chunking_is_answered_as_static_800_400(http: httpx.Client) -> None:
    """Without a strategy (or with auto) the file is chunked 800/400, answered as static."""
    store = new_store(http)["id"]
    file_id = upload(http, "c.txt", b"text")
    answer = ok(
        http.post(
            f"vector_stores/{store}/files",
            json={"file_id": file_id, "chunking_strategy": {"type": "auto"}},
        ),
        "VectorStoreFileObject",
    )
    assert answer["chunking_strategy"]["static"] == {
        "max_chunk_size_tokens": 800,
        "chunk_overlap_tokens": 400,
    }


def test_attaching_twice_keeps_one_attachment(http: httpx.Client) -> None:
    """A file attached again is answered with its attachment: a store holds a file once."""
    store = new_store(http)["id"]
    file_id = upload(http, "d.txt", b"d")
    first = ok(
        http.post(
            f"vector_stores/{store}/files", json={"file_id": file_id, "attributes": {"k": "1"}}
        ),
        "VectorStoreFileObject",
    )
    again = ok(
        http.post(f"vector_stores/{store}/files", json={"file_id": file_id}),
        "VectorStoreFileObject",
    )
    assert again["id"] == first["id"] and again["attributes"] == {"k": "1"}
    page = ok(http.get(f"vector_stores/{store}/files"), "ListVectorStoreFilesResponse")
    assert len(page["data"]) == 1


@pytest.mark.parametrize(
    ("attributes", "fragment"),
    [
        ({f"k{i}": "v" for i in range(17)}, "at most 16"),
        ({"k" * 65: "v"}, "65 characters"),
        ({"k": "v" * 513}, "512"),
        ({"k": ["a"]}, "not a string, a number or a boolean"),
        ({"k": {"a": 1}}, "not a string, a number or a boolean"),
        ({"k": None}, "not a string, a number or a boolean"),
    ],
)
def test_attribute_limits(http: httpx.Client, attributes: dict[str, Any], fragment: str) -> None:
    """Attributes over the published limits are a 400 naming `attributes`; nothing attached."""
    store = new_store(http)["id"]
    file_id = upload(http, "e.txt", b"e")
    body = {"file_id": file_id, "attributes": attributes}
    found = error(http.post(f"vector_stores/{store}/files", json=body), 400)
    assert found["param"] == "attributes" and fragment in found["message"]
    found = error(http.post(f"vector_stores/{store}/file_batches", json={"files": [body]}), 400)
    assert found["param"] == "files[0].attributes"
    assert ok(http.get(f"vector_stores/{store}"), "VectorStoreObject")["file_counts"]["total"] == 0


def test_sixteen_attributes_at_their_longest_pass(http: httpx.Client) -> None:
    """16 pairs with 64-character keys and 512-character values are accepted."""
    store = new_store(http)["id"]
    file_id = upload(http, "f.txt", b"f")
    attributes = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    answer = ok(
        http.post(
            f"vector_stores/{store}/files", json={"file_id": file_id, "attributes": attributes}
        ),
        "VectorStoreFileObject",
    )
    assert answer["attributes"] == attributes


@pytest.mark.parametrize(
    "strategy",
    [
        {"type": "static", "static": {"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0}},
        {"type": "static", "static": {"max_chunk_size_tokens": 4097, "chunk_overlap_tokens": 0}},
        {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 401}},
        {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": -1}},
        {"type": "static", "static": {"max_chunk_size_tokens": 800}},
        {"type": "static", "static": {"max_chunk_size_tokens": "800", "chunk_overlap_tokens": 0}},
        {"type": "other"},
        {"type": "auto", "static": {}},
    ],
)
def test_chunking_limits(http: httpx.Client, strategy: dict[str, Any]) -> None:
    """A strategy outside auto / static 100-4096 with overlap 0 to half is a 400."""
    store = new_store(http)["id"]
    file_id = upload(http, "g.txt", b"g")
    body = {"file_id": file_id, "chunking_strategy": strategy}
    assert error(http.post(f"vector_stores/{store}/files", json=body), 400)["param"] == (
        "chunking_strategy"
    )


def test_chunking_bounds_pass(http: httpx.Client) -> None:
    """100 and 4096 tokens, overlap exactly half, are accepted."""
    store = new_store(http)["id"]
    for size in (100, 4096):
        file_id = upload(http, f"h{size}.txt", b"h")
        strategy = {
            "type": "static",
            "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": size // 2},
        }
        ok(
            http.post(
                f"vector_stores/{store}/files",
                json={"file_id": file_id, "chunking_strategy": strategy},
            ),
            "VectorStoreFileObject",
        )


def test_bad_references_are_404_and_purposes_400(http: httpx.Client) -> None:
    """An unknown store or file is a 404 naming it; a fine-tune file is refused (400)."""
    store = new_store(http)["id"]
    found = error(http.post("vector_stores/vs_nope/files", json={"file_id": "file-x"}), 404)
    assert "vs_nope" in found["message"]
    assert (
        "file-x"
        in error(http.post(f"vector_stores/{store}/files", json={"file_id": "file-x"}), 404)[
            "message"
        ]
    )
    tuned = upload(http, "t.jsonl", b'{"messages": []}\n', purpose="fine-tune")
    found = error(http.post(f"vector_stores/{store}/files", json={"file_id": tuned}), 400)
    assert "fine-tune" in found["message"]
    error(http.get("vector_stores/vs_nope"), 404)
    error(http.delete("vector_stores/vs_nope"), 404)
    error(http.get(f"vector_stores/{store}/file_batches/vsfb_nope"), 404)
    found = error(http.post(f"vector_stores/{store}/files", json={"file_id": "f", "extra": 1}), 400)
    assert found["param"] == "extra"


def test_list_paging_and_filter(http: httpx.Client) -> None:
    """limit 1-100 (default 20), order, after/before and the status filter page exactly."""
    store = new_store(http)["id"]
    ids = [upload(http, f"p{i}.txt", b"p") for i in range(25)]
    batch = ok(
        http.post(f"vector_stores/{store}/file_batches", json={"file_ids": ids}),
        "VectorStoreFileBatchObject",
    )
    assert batch["file_counts"]["total"] == 25
    first = ok(http.get(f"vector_stores/{store}/files"), "ListVectorStoreFilesResponse")
    assert len(first["data"]) == 20 and first["has_more"] is True
    rest = ok(
        http.get(f"vector_stores/{store}/files", params={"after": first["last_id"]}),
        "ListVectorStoreFilesResponse",
    )
    assert len(rest["data"]) == 5 and rest["has_more"] is False
    seen = [f["id"] for f in first["data"] + rest["data"]]
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 25
    ascending = ok(
        http.get(f"vector_stores/{store}/files", params={"order": "asc", "limit": 100}),
        "ListVectorStoreFilesResponse",
    )
    assert [f["id"] for f in ascending["data"]] == list(reversed(seen))
    back = ok(
        http.get(f"vector_stores/{store}/files", params={"before": rest["first_id"], "limit": 3}),
        "ListVectorStoreFilesResponse",
    )
    assert [f["id"] for f in back["data"]] == seen[17:20] and back["has_more"] is True
    for limit in ("0", "101", "x"):
        assert (
            error(http.get(f"vector_stores/{store}/files", params={"limit": limit}), 400)["param"]
            == "limit"
        )
    assert (
        error(http.get(f"vector_stores/{store}/files", params={"filter": "done"}), 400)["param"]
        == "filter"
    )
    assert error(http.get("vector_stores", params={"order": "up"}), 400)["param"] == "order"
    poll(
        lambda: (
            ok(http.get(f"vector_stores/{store}"), "VectorStoreObject")["file_counts"]["completed"]
            == 25
        ),
        "indexing",
    )
    done = ok(
        http.get(f"vector_stores/{store}/files", params={"filter": "completed", "limit": 100}),
        "ListVectorStoreFilesResponse",
    )
    assert len(done["data"]) == 25
    busy = ok(
        http.get(f"vector_stores/{store}/files", params={"filter": "in_progress"}),
        "ListVectorStoreFilesResponse",
    )
    assert busy["data"] == [] and busy["first_id"] == "" and busy["has_more"] is False


def test_batches_take_files_or_file_ids(http: httpx.Client) -> None:
    """file_ids (batch-wide attributes) or files (per file); not both, not none, 1-2000."""
    store = new_store(http)["id"]
    a, b = upload(http, "a.txt", b"a"), upload(http, "b.txt", b"b")
    batch = ok(
        http.post(
            f"vector_stores/{store}/file_batches",
            json={
                "files": [
                    {"file_id": a, "attributes": {"path": "a.txt"}},
                    {"file_id": b, "attributes": {"path": "b.txt"}},
                ]
            },
        ),
        "VectorStoreFileBatchObject",
    )
    assert batch["object"] == "vector_store.files_batch" and batch["file_counts"]["total"] == 2
    files = ok(
        http.get(f"vector_stores/{store}/file_batches/{batch['id']}/files"),
        "ListVectorStoreFilesResponse",
    )
    assert {f["id"]: f["attributes"]["path"] for f in files["data"]} == {a: "a.txt", b: "b.txt"}
    poll(
        lambda: (
            ok(
                http.get(f"vector_stores/{store}/file_batches/{batch['id']}"),
                "VectorStoreFileBatchObject",
            )["status"]
            == "completed"
        ),
        "batch",
    )
    both = {"file_ids": [a], "files": [{"file_id": b}]}
    error(http.post(f"vector_stores/{store}/file_batches", json=both), 400)
    error(http.post(f"vector_stores/{store}/file_batches", json={}), 400)
    error(http.post(f"vector_stores/{store}/file_batches", json={"file_ids": []}), 400)
    too_many = {"file_ids": [a] * 2001}
    assert (
        "2001"
        in error(http.post(f"vector_stores/{store}/file_batches", json=too_many), 400)["message"]
    )
    error(http.post("vector_stores", json={"file_ids": [a] * 501}), 400)
    missing = {"file_ids": [a, "file-missing"]}
    error(http.post(f"vector_stores/{store}/file_batches", json=missing), 404)


def test_batch_cancel_cancels_files_still_indexing(
    vserver: ServerProcess, http: httpx.Client
) -> None:
    """Cancelling a batch whose files stall makes them `cancelled`, and the batch too."""
    vserver.set_faults({"indexing": {"stall_names": ["stuck-*"]}})
    store = new_store(http)["id"]
    ids = [upload(http, f"stuck-{i}.txt", b"s") for i in range(3)]
    batch = ok(
        http.post(f"vector_stores/{store}/file_batches", json={"file_ids": ids}),
        "VectorStoreFileBatchObject",
    )
    cancelled = ok(
        http.post(f"vector_stores/{store}/file_batches/{batch['id']}/cancel"),
        "VectorStoreFileBatchObject",
    )
    assert cancelled["status"] == "cancelled" and cancelled["file_counts"]["cancelled"] == 3
    assert {status_of(http, store, i) for i in ids} == {"cancelled"}


def test_indexing_outcomes(vserver: ServerProcess, http: httpx.Client) -> None:
    """Unsupported types and undecodable text fail with their code; injected failures
    fail as configured; a stalled file stays in_progress well past the delay."""
    vserver.set_faults(
        {
            "indexing": {
                "fail_names": ["*.bad.txt"],
                "stall_names": ["slow.txt"],
                "failure_code": "server_error",
            }
        }
    )
    store = new_store(http)["id"]
    files = {
        "good.txt": (b"fine", "completed", None),
        "data.jsonl": (b"{}\n", "failed", "unsupported_file"),
        "latin.txt": ("caf\u00e9".encode("latin-1"), "failed", "invalid_file"),
        "wide.txt": ("\ufeffhi".encode("utf-16"), "completed", None),
        "x.bad.txt": (b"bad", "failed", "server_error"),
        "slow.txt": (b"slow", "in_progress", None),
    }
    ids = {name: upload(http, name, content) for name, (content, _, _) in files.items()}
    ok(
        http.post(f"vector_stores/{store}/file_batches", json={"file_ids": list(ids.values())}),
        "VectorStoreFileBatchObject",
    )
    time.sleep(INDEX_DELAY * 3)  # the stall must still be in progress well after the delay
    for name, (_, status, code) in files.items():
        answer = store_file(http, store, ids[name])
        assert answer["status"] == status, name
        assert (answer["last_error"] or {}).get("code") == code, name


def test_deleting_a_file_removes_it_from_every_store(http: httpx.Client) -> None:
    """DELETE /files/{id} takes the file out of every store it was attached to."""
    stores = [new_store(http)["id"] for _ in range(2)]
    file_id = upload(http, "z.txt", b"z")
    for store in stores:
        ok(
            http.post(f"vector_stores/{store}/files", json={"file_id": file_id}),
            "VectorStoreFileObject",
        )
    ok(http.delete(f"files/{file_id}"), "DeleteFileResponse")
    for store in stores:
        error(http.get(f"vector_stores/{store}/files/{file_id}"), 404)
        assert (
            ok(http.get(f"vector_stores/{store}"), "VectorStoreObject")["file_counts"]["total"] == 0
        )


def test_state_survives_a_restart(vserver: ServerProcess, http: httpx.Client) -> None:
    """Stores, attachments and their attributes are on disk: a restart keeps them."""
    store = new_store(http, name="kept")["id"]
    file_id = upload(http, "k.txt", b"k")
    ok(
        http.post(
            f"vector_stores/{store}/files", json={"file_id": file_id, "attributes": {"a": 1}}
        ),
        "VectorStoreFileObject",
    )
    vserver.restart()
    with httpx.Client(
        base_url=vserver.base_url + "/", headers=vserver.headers(), timeout=30
    ) as again:
        assert store_file(again, store, file_id)["attributes"] == {"a": 1}
        assert ok(again.get(f"vector_stores/{store}"), "VectorStoreObject")["name"] == "kept"


def test_the_official_sdk_works(vserver: ServerProcess) -> None:
    """The openai SDK's vector store calls all parse their answers from syncd serve."""
    client = openai.OpenAI(base_url=vserver.base_url, api_key=vserver.client_key, max_retries=0)
    store = client.vector_stores.create(name="sdk", metadata={"k": "v"})
    uploaded = client.files.create(file=("s.txt", b"sdk text"), purpose="assistants")
    attached = client.vector_stores.files.create(
        vector_store_id=store.id, file_id=uploaded.id, attributes={"path": "s.txt"}
    )
    assert attached.id == uploaded.id
    other = client.files.create(file=("t.txt", b"more"), purpose="user_data")
    batch = client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=[other.id])
    assert (
        client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id).id
        == batch.id
    )
    listed = list(client.vector_stores.files.list(vector_store_id=store.id, limit=1))
    assert {f.id for f in listed} == {uploaded.id, other.id}  # the SDK follows has_more
    updated = client.vector_stores.files.update(
        file_id=uploaded.id, vector_store_id=store.id, attributes={"path": "u.txt"}
    )
    assert updated.attributes == {"path": "u.txt"}
    assert [s.id for s in client.vector_stores.list()] == [store.id]
    assert client.vector_stores.files.delete(file_id=other.id, vector_store_id=store.id).deleted
    assert client.vector_stores.delete(store.id).deleted
