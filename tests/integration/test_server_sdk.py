"""The official `openai` SDK against a real `syncd serve`: the five calls and their errors.

Every JSON answer is also validated (tests/apispec.py): our schemas, the SDK's own models,
and the published spec where it is beside the clone.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from apispec import validate
from serverproc import ServerProcess

from syncd.api import UPLOAD_PURPOSES


def sdk(server: ServerProcess, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url, api_key=key or server.client_key, max_retries=0, timeout=30
    )


def raw_json(response: Any) -> Any:
    """The JSON body of an SDK raw response (``with_raw_response``)."""
    return json.loads(response.http_response.content)


def test_create_retrieve_content_delete_roundtrip(server: ServerProcess) -> None:
    """create -> retrieve -> content -> delete with the SDK; every answer matches the spec."""
    client = sdk(server)
    payload = bytes(range(256)) * 40
    raw = client.files.with_raw_response.create(file=("docs/blob.bin", payload), purpose="vision")
    created = raw_json(raw)
    validate("OpenAIFile", created)
    assert created["id"].startswith("file-") and len(created["id"]) == len("file-") + 24
    assert created["bytes"] == len(payload)
    assert created["filename"] == "docs/blob.bin"
    assert created["purpose"] == "vision"
    assert created["status"] == "processed"
    assert raw.parse().id == created["id"]

    retrieved = raw_json(client.files.with_raw_response.retrieve(created["id"]))
    validate("OpenAIFile", retrieved)
    assert retrieved == created

    content = client.files.content(created["id"])
    assert content.read() == payload
    assert content.response.headers["content-type"] == "application/octet-stream"

    deleted_raw = client.files.with_raw_response.delete(created["id"])
    deleted = raw_json(deleted_raw)
    validate("DeleteFileResponse", deleted)
    assert deleted == {"id": created["id"], "object": "file", "deleted": True}
    assert deleted_raw.parse().deleted is True
    assert [f.id for f in client.files.list()] == []


def test_list_pages_through_everything_with_limit_2(server: ServerProcess) -> None:
    """SDK auto-pagination with limit=2 yields every file exactly once, newest first."""
    client = sdk(server)
    ids = [
        client.files.create(file=(f"f{i}.txt", b"x" * (i + 1)), purpose="assistants").id
        for i in range(7)
    ]
    server.reset_stats()
    listed = [f.id for f in client.files.list(limit=2)]
    assert listed == list(reversed(ids))
    assert server.stats()["counts"]["list"] == 4  # pages of 2, 2, 2, 1

    after = None
    pages = 0
    while True:
        page = raw_json(client.files.with_raw_response.list(limit=2, after=after or openai.omit))
        validate("ListFilesResponse", page)
        pages += 1
        assert page["first_id"] == page["data"][0]["id"]
        assert page["last_id"] == page["data"][-1]["id"]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert pages == 4


def test_list_order_and_purpose_filter(server: ServerProcess) -> None:
    """order=asc/desc sort by creation; purpose= returns only files of that purpose."""
    client = sdk(server)
    a = client.files.create(file=("a.txt", b"a"), purpose="assistants").id
    b = client.files.create(file=("b.jsonl", b'{"b": 1}\n'), purpose="batch").id
    c = client.files.create(file=("c.txt", b"c"), purpose="assistants").id
    assert [f.id for f in client.files.list(order="asc")] == [a, b, c]
    assert [f.id for f in client.files.list(order="desc")] == [c, b, a]
    assert [f.id for f in client.files.list()] == [c, b, a]  # desc is the default
    page = raw_json(client.files.with_raw_response.list(purpose="assistants", order="asc"))
    validate("ListFilesResponse", page)
    assert [f["id"] for f in page["data"]] == [a, c]
    assert [f.id for f in client.files.list(purpose="batch")] == [b]
    assert [f.id for f in client.files.list(purpose="vision")] == []


def test_empty_list_is_valid(server: ServerProcess) -> None:
    """An empty store lists as a schema-valid page with has_more false."""
    page = raw_json(sdk(server).files.with_raw_response.list())
    validate("ListFilesResponse", page)
    assert page["data"] == [] and page["has_more"] is False


@pytest.mark.parametrize("purpose", UPLOAD_PURPOSES)
def test_every_upload_purpose_is_accepted(server: ServerProcess, purpose: str) -> None:
    """Each purpose of the upload enum is accepted (JSON Lines where the purpose needs it)."""
    created = sdk(server).files.with_raw_response.create(
        file=("data.jsonl", b'{"messages": []}\n{"n": 2}\n'),
        purpose=purpose,  # type: ignore[arg-type]
    )
    body = raw_json(created)
    validate("OpenAIFile", body)
    assert body["purpose"] == purpose


def test_expires_after_sets_expires_at(server: ServerProcess) -> None:
    """expires_after {created_at, 3600} gives expires_at = created_at + 3600."""
    created = raw_json(
        sdk(server).files.with_raw_response.create(
            file=("e.txt", b"e"),
            purpose="user_data",
            expires_after={"anchor": "created_at", "seconds": 3600},
        )
    )
    validate("OpenAIFile", created)
    assert created["expires_at"] == created["created_at"] + 3600


def _error_body(exc: openai.APIStatusError) -> Any:
    body = exc.response.json()
    validate("ErrorResponse", body)
    return body["error"]


def test_unknown_file_is_not_found(server: ServerProcess) -> None:
    """retrieve, content and delete of an unknown id raise the SDK's NotFoundError."""
    client = sdk(server)
    for call in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError) as caught:
            call("file-doesnotexist")
        error = _error_body(caught.value)
        assert error["message"] == "No such File object: file-doesnotexist"
        assert error["type"] == "invalid_request_error"


def test_bad_purpose_is_bad_request(server: ServerProcess) -> None:
    """An unknown purpose is a 400 BadRequestError naming the purpose parameter."""
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).files.create(file=("a.txt", b"a"), purpose="holiday-photos")  # type: ignore[arg-type]
    error = _error_body(caught.value)
    assert error["param"] == "purpose"
    assert "holiday-photos" in error["message"]
    assert server.blob_paths() == []


def test_fine_tune_file_must_be_jsonl(server: ServerProcess) -> None:
    """A fine-tune file not named .jsonl is a 400 BadRequestError and nothing is stored."""
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).files.create(file=("train.csv", b'{"a": 1}\n'), purpose="fine-tune")
    error = _error_body(caught.value)
    assert error["param"] == "file"
    assert ".jsonl" in error["message"]
    assert server.blob_paths() == []


def test_fine_tune_line_must_be_json(server: ServerProcess) -> None:
    """A .jsonl fine-tune file with a non-JSON line is refused, naming the line."""
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server).files.create(
            file=("train.jsonl", b'{"a": 1}\n{"b": 2}\nnot json\n'), purpose="fine-tune"
        )
    assert "line 3" in _error_body(caught.value)["message"]
    assert server.blob_paths() == []


def test_wrong_key_is_authentication_error(server_factory: Any) -> None:
    """With --api-key, another key raises AuthenticationError; the right one works."""
    server = server_factory(api_key="sk-right-key-123")
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(server, key="sk-wrong-key-456").files.list()
    error = _error_body(caught.value)
    assert error["code"] == "invalid_api_key"
    assert "sk-wrong" not in error["message"]  # the key is never echoed
    assert sdk(server).files.list().data == []


def test_azure_style_key_header_and_api_version_are_accepted(server_factory: Any) -> None:
    """The `api-key` header authenticates and an `api-version` query parameter is ignored."""
    server = server_factory(api_key="azure-key")
    response = httpx.get(
        f"{server.base_url}/files",
        params={"api-version": "2024-10-21"},
        headers={"api-key": "azure-key", "OpenAI-Organization": "org-x", "OpenAI-Project": "p"},
    )
    assert response.status_code == 200
    validate("ListFilesResponse", response.json())
