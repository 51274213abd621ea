"""The command-line dispatcher."""

from __future__ import annotations

import pytest

from syncd.cli import COMMANDS, _wanted_commands, main


def test_cli_imports_only_the_named_subcommand() -> None:
    """`syncd status` builds its parser without importing the other subcommands."""
    assert _wanted_commands(["--log-format", "json", "status", "x"]) == ("status",)
    assert _wanted_commands(["-v", "sync", "FOLDER"]) == ("sync",)
    assert _wanted_commands(["--help"]) == COMMANDS
    assert _wanted_commands(["nonsense"]) == COMMANDS


def test_syncd_alone_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`syncd` with no arguments prints the commands with what each does, exit 2."""
    assert main([]) == 2
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"\n    {command} " in out
    assert "--create-folder" in out
