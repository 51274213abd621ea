"""No API key, in any form, reaches syncd's output, its ledger or its logs; a key or a
key file that cannot be used is one line naming where it came from, exit 2.

The key used is Azure-shaped (hex, no ``sk-`` prefix), so that no pattern finds it:
only the checks and the redaction of the key in use keep it out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from oddserver import Handler, OddServer, Request
from synccli import Measured, run_measured, write

OddFactory = Callable[..., OddServer]
SECRET = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
PASSWORD = "hunter2-of-the-proxy"


def syncd(*args: str | Path, env: dict[str, str], **options: bool) -> Measured:
    return run_measured(*args, env=env, timeout=60.0, **options)


def everything_written(result: Measured, state: Path) -> str:
    """stdout, stderr and every row of every ledger under ``state``, as one text."""
    parts = [result.stdout, result.stderr]
    for ledger in state.rglob("*.db"):
        with sqlite3.connect(ledger) as db:
            parts.extend(db.iterdump())
    return "\n".join(parts)


def assert_one_config_line(result: Measured, *must: str) -> None:
    """Exit 2, exactly one line on stderr, holding every string of ``must``."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("syncd: "), result.stderr
    for text in must:
        assert text in lines[0], lines[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write(root, "a.txt", "alpha")
    return root


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_server_echoing_the_key_never_gets_it_into_output_ledger_or_logs(
    odd_server: OddFactory, tmp_path: Path, folder: Path, log_format: str
) -> None:
    """A server that quotes the Authorization header in its 503 (retried, each retry
    logged) and then its 401: sync, status --json, ls and -v logs hold no key."""

    def echo(h: Handler, r: Request, n: int) -> None:
        quoted = r.headers.get("authorization", "")
        status = 503 if n % 3 else 401
        h.answer(status, {"error": {"message": f"rejected {quoted} ({SECRET!r})"}})

    server = odd_server(echo)
    state = tmp_path / "state"
    env = {"OPENAI_API_KEY": SECRET}
    url = ("--base-url", server.base_url)
    results = [
        syncd("--log-format", log_format, "-v", "sync", folder, "--state", state, *url, env=env),
        syncd("--log-format", log_format, "status", folder, "--state", state, "--json", env=env),
        syncd("--log-format", log_format, "-v", "ls", "--state", state, *url, env=env),
    ]
    assert results[0].returncode != 0
    assert len(server.requests) >= 3
    for result in results:
        text = everything_written(result, state)
        assert SECRET not in text
        assert "Traceback" not in text


def test_a_key_file_with_a_second_line_is_refused_without_showing_it(
    tmp_path: Path, folder: Path
) -> None:
    """A key file holding the key and a note: exit 2, one line naming the file; neither
    line of it is shown, nothing is sent."""
    key_file = tmp_path / "key"
    key_file.write_text(f"{SECRET}\nrotated by ops\n")
    env = {"OPENAI_API_KEY_FILE": str(key_file)}
    result = syncd("sync", folder, "--state", tmp_path / "state", env=env)
    assert_one_config_line(result, str(key_file), "2 lines")
    assert SECRET not in result.stderr and "rotated" not in result.stderr


@pytest.mark.parametrize("key", [f"{SECRET} {SECRET}", f"{SECRET}\x1b[0m", f"{SECRET}\tx"])
def test_a_key_with_inner_whitespace_or_controls_is_refused(
    tmp_path: Path, folder: Path, key: str
) -> None:
    """OPENAI_API_KEY with a space, a tab or an escape inside: exit 2, one line."""
    result = syncd("sync", folder, "--state", tmp_path / "state", env={"OPENAI_API_KEY": key})
    assert_one_config_line(result, "OPENAI_API_KEY")
    assert SECRET not in result.stderr


@pytest.mark.parametrize("where", ["--base-url", "OPENAI_BASE_URL"])
def test_a_password_in_the_base_url_is_refused_without_showing_it(
    tmp_path: Path, folder: Path, where: str
) -> None:
    """http://user:password@host: exit 2, one line with the URL masked."""
    url = f"http://proxyuser:{PASSWORD}@127.0.0.1:9/v1"
    env = {"OPENAI_API_KEY": SECRET}
    args: list[str | Path] = ["sync", folder, "--state", tmp_path / "state"]
    if where == "--base-url":
        args += ["--base-url", url]
    else:
        env["OPENAI_BASE_URL"] = url
    result = syncd(*args, env=env)
    assert_one_config_line(result, "user name or password", "***@127.0.0.1")
    assert PASSWORD not in result.stderr


@pytest.mark.parametrize("kind", ["unreadable", "directory"])
def test_an_unusable_key_file_is_one_line_naming_it(
    tmp_path: Path, folder: Path, kind: str
) -> None:
    """A key file syncd may not read (chmod 000, root's override dropped) or that is a
    directory: exit 2, one line naming the path, no traceback."""
    key_file = tmp_path / "key"
    if kind == "directory":
        key_file.mkdir()
    else:
        key_file.write_text(SECRET)
        key_file.chmod(0)
    env = {"OPENAI_API_KEY_FILE": str(key_file)}
    result = syncd("sync", folder, "--state", tmp_path / "state", env=env, obey_file_modes=True)
    reason = "Is a directory" if kind == "directory" else "Permission denied"
    assert_one_config_line(result, str(key_file), reason)


def test_run_with_an_unsearchable_credentials_directory_is_one_line(
    tmp_path: Path, folder: Path
) -> None:
    """`syncd run` under systemd whose $CREDENTIALS_DIRECTORY it may not search: exit 2
    with one line naming the credential (it was a PermissionError traceback)."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "openai_api_key").write_text(SECRET)
    creds.chmod(0)
    try:
        result = syncd(
            "run",
            folder,
            "--state",
            tmp_path / "state",
            "--base-url",
            "http://127.0.0.1:9/v1",
            env={"CREDENTIALS_DIRECTORY": str(creds)},
            obey_file_modes=True,
        )
    finally:
        creds.chmod(0o700)
    assert_one_config_line(result, str(creds / "openai_api_key"))
