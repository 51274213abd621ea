"""The key and the base URL are checked before anything is sent, and never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.errors import ConfigError
from syncd.remote.settings import (
    DEFAULT_ANSWER_DEADLINE,
    RemoteSettings,
    masked_url,
    remote_settings_from_env,
)

KEY = "sk-proj-Abc0123456789xyz"
URL = "http://127.0.0.1:9/v1"


def settings(env: dict[str, str]) -> RemoteSettings:
    return remote_settings_from_env(env, base_url=URL)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (f"{KEY}\nsecond-line", "2 lines"),
        (f"{KEY}\r\n{KEY}", "2 lines"),
        ("sk-proj Abc", "space or tab"),
        ("sk-proj\tAbc", "space or tab"),
        ("sk-proj\x00Abc", "control or non-ASCII"),
        ("sk-proj-Abc\x1b[2J", "control or non-ASCII"),
        ("sk-proj-Äbc", "control or non-ASCII"),
        ("s" * 5000, "5000 characters"),
    ],
)
def test_an_unusable_key_is_a_config_error_that_does_not_show_it(key: str, reason: str) -> None:
    """A key with a second line, inner whitespace, a control character or absurd length
    is refused at start, naming the variable and the reason, never the key."""
    with pytest.raises(ConfigError) as info:
        settings({"OPENAI_API_KEY": key})
    message = str(info.value)
    assert "OPENAI_API_KEY" in message and reason in message
    assert "Abc" not in message and "second-line" not in message


def test_surrounding_whitespace_of_a_key_is_dropped() -> None:
    """A trailing newline (echo > file) is not part of the key."""
    assert settings({"OPENAI_API_KEY": f"  {KEY}\n"}).api_key == KEY


def test_keys_without_the_openai_prefix_are_fine() -> None:
    """Azure's and other servers' keys have no sk- prefix; none is required."""
    env = {"AZURE_OPENAI_API_KEY": "0123456789abcdef0123456789abcdef"}
    assert settings(env).auth_header == "api-key"


def test_a_key_file_with_a_second_line_is_refused_naming_the_file(tmp_path: Path) -> None:
    """The file's path is named, the key is not."""
    key_file = tmp_path / "key"
    key_file.write_text(f"{KEY}\nnotes: rotated 2024\n")
    with pytest.raises(ConfigError) as info:
        settings({"OPENAI_API_KEY_FILE": str(key_file)})
    assert str(key_file) in str(info.value) and "2 lines" in str(info.value)
    assert KEY not in str(info.value) and "rotated" not in str(info.value)


@pytest.mark.parametrize("kind", ["directory", "fifo", "missing", "huge", "binary", "empty"])
def test_a_key_file_that_cannot_be_a_key_is_one_line_naming_it(tmp_path: Path, kind: str) -> None:
    """A directory, a FIFO (which would block), a missing, huge, binary or empty file:
    ConfigError naming the path, at once."""
    path = tmp_path / "key"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        path.write_bytes(b"k" * (65 * 1024))
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00key")
    elif kind == "empty":
        path.write_bytes(b"\n")
    with pytest.raises(ConfigError) as info:
        settings({"OPENAI_API_KEY_FILE": str(path)})
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_an_unsearchable_credentials_directory_is_one_line(tmp_path: Path) -> None:
    """$CREDENTIALS_DIRECTORY that cannot be searched (systemd, another user): the
    credential's path is named; no PermissionError escapes."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "openai_api_key").write_text(KEY)
    creds.chmod(0)
    try:
        if os.access(creds / "openai_api_key", os.F_OK):
            pytest.skip("running with the power to ignore file modes (root)")
        with pytest.raises(ConfigError, match="cannot look for the systemd credential"):
            settings({"CREDENTIALS_DIRECTORY": str(creds)})
    finally:
        creds.chmod(0o700)


def test_a_credentials_directory_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    """$CREDENTIALS_DIRECTORY naming a file: ConfigError naming it."""
    not_dir = tmp_path / "creds"
    not_dir.write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        settings({"CREDENTIALS_DIRECTORY": str(not_dir)})


@pytest.mark.parametrize(
    "url",
    ["http://user:hunter2@host/v1", "https://hunter2@host/v1", "http://u:hunter2@[::1]:8/v1"],
)
def test_a_base_url_with_credentials_is_refused_without_showing_them(url: str) -> None:
    """Credentials in the base URL are a ConfigError (module docstring says why); the
    message shows the URL masked."""
    with pytest.raises(ConfigError) as info:
        remote_settings_from_env({"OPENAI_API_KEY": KEY}, base_url=url)
    assert "user name or password" in str(info.value)
    assert "hunter2" not in str(info.value) and "***@" in str(info.value)


@pytest.mark.parametrize("url", ["http://host:port/v1", "http://ho\x1bst/v1", "ftp://h/v1"])
def test_a_malformed_base_url_is_a_config_error(url: str) -> None:
    """A non-numeric port, a control character or another scheme: ConfigError."""
    with pytest.raises(ConfigError, match="--base-url"):
        remote_settings_from_env({"OPENAI_API_KEY": KEY}, base_url=url)


def test_masked_url_hides_only_the_credentials() -> None:
    """user:password@ becomes ***@; the rest stays readable."""
    assert masked_url("https://a:b@h:1/v1/x@y") == "https://***@h:1/v1/x@y"
    assert masked_url("https://h/v1") == "https://h/v1"


def test_settings_built_in_code_are_checked_too() -> None:
    """RemoteSettings itself refuses a key with a newline: nothing can bypass the check."""
    with pytest.raises(ConfigError):
        RemoteSettings(base_url=URL, api_key=f"{KEY}\nx")


def test_the_answer_deadline_comes_from_the_environment() -> None:
    """SYNCD_ANSWER_DEADLINE lowers the deadline (tests); a bad value is a ConfigError."""
    assert settings({"OPENAI_API_KEY": KEY}).answer_deadline == DEFAULT_ANSWER_DEADLINE
    env = {"OPENAI_API_KEY": KEY, "SYNCD_ANSWER_DEADLINE": "2.5"}
    assert settings(env).answer_deadline == 2.5
    with pytest.raises(ConfigError, match="SYNCD_ANSWER_DEADLINE"):
        settings({**env, "SYNCD_ANSWER_DEADLINE": "never"})


def test_deadlines_grow_with_the_size_of_a_transfer() -> None:
    """Downloads: answer deadline + size / 100 kB/s; uploads: timeout + size / 100 kB/s."""
    s = RemoteSettings(base_url=URL, api_key=KEY)
    assert s.download_deadline(0) == 120.0
    assert s.download_deadline(10_000_000) == 220.0
    assert s.upload_deadline(512_000_000) == 600.0 + 5120.0
