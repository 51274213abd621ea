"""The shared remote options: --local (embedded server in the state directory), --base-url."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from serverproc import ServerProcess

from syncd.commands._remote import add_remote_arguments, open_remote
from syncd.errors import ConfigError


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="syncd test")
    add_remote_arguments(parser)
    return parser.parse_args(argv)


def test_local_starts_an_embedded_server_whose_store_outlives_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--local serves from <state>/local-server, says so on stderr, and keeps files across runs."""
    state = tmp_path / "state"
    source = tmp_path / "a.txt"
    source.write_text("local")
    with open_remote(parse(["--local"]), state) as remote:
        uploaded = remote.upload(source, "a.txt", "user_data")
    err = capsys.readouterr().err
    assert "syncd: local server at http://127.0.0.1:" in err
    assert f"store in {state / 'local-server'}" in err
    assert (state / "local-server").is_dir()
    with open_remote(parse(["--local"]), state) as remote:
        assert [f.id for f in remote.list_files()] == [uploaded.id]


def test_base_url_option_with_the_key_from_the_environment(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--base-url points at a server; the key comes from OPENAI_API_KEY, not from argv."""
    monkeypatch.setenv("OPENAI_API_KEY", server.client_key)
    source = tmp_path / "b.txt"
    source.write_text("remote")
    with open_remote(parse(["--base-url", server.base_url]), tmp_path / "state") as remote:
        remote.upload(source, "b.txt", "user_data")
    assert server.stats()["counts"]["create"] == 1


def test_without_a_key_the_remote_is_refused_with_how_to_fix_it(tmp_path: Path) -> None:
    """No key and no --local: ConfigError that mentions OPENAI_API_KEY and --local."""
    with (
        pytest.raises(ConfigError, match=r"OPENAI_API_KEY.*--local"),
        open_remote(parse([]), tmp_path / "state"),
    ):
        pass


def test_local_and_base_url_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    """Giving both --local and --base-url is a usage error."""
    with pytest.raises(SystemExit) as info:
        parse(["--local", "--base-url", "http://127.0.0.1:1/v1"])
    assert info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
