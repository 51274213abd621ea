"""Remote settings from the environment: base URL, key sources, Azure, secrecy of the key."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from syncd.errors import ConfigError, FileChangedError
from syncd.remote.files_http import _SizedReader
from syncd.remote.settings import DEFAULT_BASE_URL, RemoteSettings, remote_settings_from_env

KEY = "sk-test-0123456789abcdefSECRET"


def test_defaults_with_only_a_key() -> None:
    """OPENAI_API_KEY alone: the public API, bearer auth, no extra headers or parameters."""
    settings = remote_settings_from_env({"OPENAI_API_KEY": KEY})
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.headers() == {"Authorization": f"Bearer {KEY}"}
    assert settings.query_params() == {}


def test_base_url_option_beats_environment() -> None:
    """--base-url wins over OPENAI_BASE_URL, which wins over the default; trailing / dropped."""
    env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/"}
    assert remote_settings_from_env(env).base_url == "http://127.0.0.1:9/v1"
    chosen = remote_settings_from_env(env, base_url="https://example.invalid/openai/v1")
    assert chosen.base_url == "https://example.invalid/openai/v1"


@pytest.mark.parametrize("url", ["ftp://host/v1", "localhost:8750", "http://", "http://h/v1?x=1"])
def test_bad_base_url_is_a_config_error(url: str) -> None:
    """A base URL that is not http(s)://host/... is refused with the option named."""
    with pytest.raises(ConfigError, match="--base-url"):
        remote_settings_from_env({"OPENAI_API_KEY": KEY}, base_url=url)


def test_key_from_key_file(tmp_path: Path) -> None:
    """OPENAI_API_KEY_FILE names a file holding the key; surrounding whitespace is dropped."""
    key_file = tmp_path / "key"
    key_file.write_text(f"  {KEY}\n")
    settings = remote_settings_from_env({"OPENAI_API_KEY_FILE": str(key_file)})
    assert settings.api_key == KEY


def test_unreadable_or_empty_key_file_names_the_file(tmp_path: Path) -> None:
    """A missing or empty key file is a ConfigError naming the file, not a traceback."""
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=str(missing)):
        remote_settings_from_env({"OPENAI_API_KEY_FILE": str(missing)})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        remote_settings_from_env({"OPENAI_API_KEY_FILE": str(empty)})


def test_key_from_systemd_credentials_directory(tmp_path: Path) -> None:
    """$CREDENTIALS_DIRECTORY/openai_api_key (systemd LoadCredential=) supplies the key."""
    (tmp_path / "openai_api_key").write_text(KEY + "\n")
    settings = remote_settings_from_env({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert settings.api_key == KEY
    assert settings.auth_header == "bearer"


def test_environment_key_beats_key_file_and_credentials(tmp_path: Path) -> None:
    """OPENAI_API_KEY is used first, then the key file, then the credentials directory."""
    (tmp_path / "openai_api_key").write_text("sk-from-credentials")
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "OPENAI_API_KEY_FILE": str(key_file)}
    assert remote_settings_from_env(env).api_key == "sk-from-file"
    assert remote_settings_from_env({**env, "OPENAI_API_KEY": KEY}).api_key == KEY


def test_organization_and_project_headers() -> None:
    """OPENAI_ORG_ID and OPENAI_PROJECT_ID become OpenAI-Organization and OpenAI-Project."""
    env = {"OPENAI_API_KEY": KEY, "OPENAI_ORG_ID": "org-1", "OPENAI_PROJECT_ID": "proj_2"}
    headers = remote_settings_from_env(env).headers()
    assert headers["OpenAI-Organization"] == "org-1"
    assert headers["OpenAI-Project"] == "proj_2"


def test_azure_key_and_api_version() -> None:
    """An Azure key goes in the api-key header (no bearer); api-version rides every request."""
    env = {
        "AZURE_OPENAI_API_KEY": "azure-secret",
        "OPENAI_API_VERSION": "2024-10-21",
        "OPENAI_BASE_URL": "https://res.openai.azure.com/openai",
    }
    settings = remote_settings_from_env(env)
    assert settings.headers() == {"api-key": "azure-secret"}
    assert settings.query_params() == {"api-version": "2024-10-21"}
    alt = remote_settings_from_env({"OPENAI_API_KEY": KEY, "AZURE_OPENAI_API_VERSION": "v9"})
    assert alt.query_params() == {"api-version": "v9"}


def test_missing_key_says_how_to_provide_one() -> None:
    """No key anywhere: a ConfigError naming every way to give one, and never argv."""
    with pytest.raises(ConfigError) as info:
        remote_settings_from_env({})
    message = str(info.value)
    for hint in ("OPENAI_API_KEY", "OPENAI_API_KEY_FILE", "LoadCredential", "command line"):
        assert hint in message


def test_missing_key_allowed_when_not_required() -> None:
    """require_key=False gives an empty key and sends no auth header."""
    settings = remote_settings_from_env({}, require_key=False)
    assert settings.api_key == ""
    assert "Authorization" not in settings.headers()


def test_key_never_in_repr_or_str() -> None:
    """The key does not appear in repr() or str() of the settings (so not in logs either)."""
    settings = RemoteSettings(base_url=DEFAULT_BASE_URL, api_key=KEY, organization="org-1")
    assert KEY not in repr(settings)
    assert KEY not in str(settings)
    assert "org-1" in repr(settings)


# -- the upload body's file reader (pure file I/O, no server) --------------------------


def test_sized_reader_serves_exactly_the_size_in_chunks(tmp_path: Path) -> None:
    """The reader reports its size by seek/tell and yields exactly that many bytes."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    with open(path, "rb") as file:
        reader = _SizedReader(file, 1000)
        assert reader.seek(0, io.SEEK_END) == 1000
        reader.seek(0)
        chunks = []
        while chunk := reader.read(300):
            chunks.append(chunk)
        assert b"".join(chunks) == b"x" * 1000
        assert reader.sent_all


def test_sized_reader_raises_when_the_file_grew_or_shrank(tmp_path: Path) -> None:
    """A file that changed size mid-upload raises before the body could be completed."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    with open(path, "rb") as file:
        reader = _SizedReader(file, 100)
        assert reader.read(100) == b"x" * 100
        with open(path, "ab") as writer:
            writer.write(b"more")
        with pytest.raises(FileChangedError, match="grew"):
            reader.read(100)
        assert not reader.sent_all
    with open(path, "rb") as file:
        reader = _SizedReader(file, 500)
        reader.read(104)
        with pytest.raises(FileChangedError, match="shrank"):
            reader.read(100)
