"""What makes two remotes the same: URL (normalized), organization, project; never the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.remote.identity import (
    RemoteIdentity,
    identity_of,
    key_fingerprint,
    local_identity,
    normalize_url,
)
from syncd.remote.settings import RemoteSettings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("HTTPS://API.OpenAI.com:443/v1/", "https://api.openai.com/v1"),
        ("http://127.0.0.1:80/v1", "http://127.0.0.1/v1"),
        ("http://127.0.0.1:8750/v1", "http://127.0.0.1:8750/v1"),
        ("https://res.openai.azure.com/openai", "https://res.openai.azure.com/openai"),
        ("http://[::1]:8750/v1", "http://[::1]:8750/v1"),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    """Case of scheme and host, default ports and trailing slashes do not matter."""
    assert normalize_url(url) == expected


def test_a_new_key_or_api_version_is_the_same_account() -> None:
    """Key and Azure api-version are not part of the identity; org and project are."""
    base = RemoteSettings(base_url="https://api.openai.com/v1", api_key="sk-a", project="p")
    rotated = identity_of(base.replace(api_key="sk-b", azure_api_version="2024-10-21"))
    assert identity_of(base).same_account(rotated)
    assert identity_of(base).key_fingerprint != rotated.key_fingerprint
    assert not identity_of(base).same_account(identity_of(base.replace(project="q")))
    assert not identity_of(base).same_account(identity_of(base.replace(organization="o")))


def test_the_fingerprint_does_not_give_the_key_back() -> None:
    """16 hex digits, stable for a key, never the key itself; none without a key."""
    fingerprint = key_fingerprint("sk-secret-0123456789")
    assert fingerprint is not None and len(fingerprint) == 16
    assert "secret" not in fingerprint and fingerprint == key_fingerprint("sk-secret-0123456789")
    assert key_fingerprint("") is None
    recorded = identity_of(RemoteSettings(base_url="https://x/v1", api_key="sk-secret-0123456789"))
    assert "sk-secret" not in recorded.to_json()


def test_local_identity_is_its_store_and_round_trips(tmp_path: Path) -> None:
    """--local is known by its store directory, not its per-run port and key."""
    identity = local_identity(tmp_path / "local-server")
    assert identity.url == f"local:{(tmp_path / 'local-server').resolve()}"
    assert RemoteIdentity.from_json(identity.to_json()) == identity
    assert RemoteIdentity.from_json("not json") is None
    assert "--local server" in identity.describe()
