"""The command-line dispatcher."""

from __future__ import annotations

from syncd.cli import COMMANDS, _wanted_commands


def test_cli_imports_only_the_named_subcommand() -> None:
    """`syncd status` builds its parser without importing the other subcommands."""
    assert _wanted_commands(["--log-format", "json", "status", "x"]) == ("status",)
    assert _wanted_commands(["-v", "sync", "FOLDER"]) == ("sync",)
    assert _wanted_commands(["--help"]) == COMMANDS
    assert _wanted_commands(["nonsense"]) == COMMANDS
