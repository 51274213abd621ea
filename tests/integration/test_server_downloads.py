"""Which purposes `syncd serve` lets one download: the real API's refusals, and
`--allow-all-downloads` to turn them off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from apispec import validate
from serverproc import ServerProcess

from syncd.server.embedded import EmbeddedServer

REFUSED = ("user_data", "assistants", "fine-tune", "evals")
SERVED = ("batch", "vision")
JSONL = b'{"custom_id": "1", "method": "POST", "url": "/v1/responses", "body": {}}\n'


def sdk(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)


def create(client: openai.OpenAI, purpose: str) -> str:
    return client.files.create(file=("data.jsonl", JSONL), purpose=purpose).id  # type: ignore[arg-type]


@pytest.mark.parametrize("purpose", REFUSED)
def test_refused_purposes_are_a_400_like_the_real_api(server: ServerProcess, purpose: str) -> None:
    """content of a user_data/assistants/fine-tune/evals file: BadRequestError, the real text."""
    client = sdk(server.base_url, server.client_key)
    file_id = create(client, purpose)
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.content(file_id)
    body = caught.value.response.json()
    validate("ErrorResponse", body)
    assert body == {
        "error": {
            "message": f"Not allowed to download files of purpose: {purpose}",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert server.stored_content(file_id) == JSONL  # stored all the same
    assert client.files.retrieve(file_id).purpose == purpose  # and retrievable


@pytest.mark.parametrize("purpose", SERVED)
def test_batch_and_vision_files_download(server: ServerProcess, purpose: str) -> None:
    """content of a batch or vision file is its bytes."""
    client = sdk(server.base_url, server.client_key)
    assert client.files.content(create(client, purpose)).read() == JSONL


def test_an_unknown_id_is_a_404_before_any_refusal(server: ServerProcess) -> None:
    """An unknown or deleted id is a 404 (the purpose check comes after the lookup)."""
    client = sdk(server.base_url, server.client_key)
    file_id = create(client, "user_data")
    client.files.delete(file_id)
    for missing in (file_id, "file-neverexisted00000000000"):
        with pytest.raises(openai.NotFoundError):
            client.files.content(missing)


def test_allow_all_downloads_serves_every_purpose(server_factory: Any) -> None:
    """With --allow-all-downloads every purpose's content comes back."""
    server = server_factory(allow_all_downloads=True)
    client = sdk(server.base_url, server.client_key)
    for purpose in REFUSED + SERVED:
        assert client.files.content(create(client, purpose)).read() == JSONL, purpose


def test_embedded_server_refuses_by_default_and_can_allow(tmp_path: Path) -> None:
    """EmbeddedServer refuses like `syncd serve`; allow_all_downloads=True serves all."""
    store = tmp_path / "store"
    with EmbeddedServer(store) as strict:
        file_id = create(sdk(strict.base_url, "k"), "user_data")
        response = httpx.get(
            f"{strict.base_url}/files/{file_id}/content", headers={"Authorization": "Bearer k"}
        )
        assert response.status_code == 400
    with EmbeddedServer(store, allow_all_downloads=True) as lenient:
        assert sdk(lenient.base_url, "k").files.content(file_id).read() == JSONL
