"""Where the ledger lives: --state, $STATE_DIRECTORY, $XDG_STATE_HOME, ~."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.errors import ConfigError
from syncd.paths import default_state_dir, find_ledgers, ledger_name, ledger_path


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"STATE_DIRECTORY": "/var/lib/syncd:/other", "XDG_STATE_HOME": "/x"}, "/var/lib/syncd"),
        ({"XDG_STATE_HOME": "/x", "HOME": "/h"}, "/x/syncd"),
        ({"XDG_STATE_HOME": "relative", "HOME": "/h"}, "/h/.local/state/syncd"),
        ({"HOME": "/h"}, "/h/.local/state/syncd"),
    ],
)
def test_default_state_dir(env: dict[str, str], expected: str) -> None:
    """systemd's directory wins, then an absolute XDG_STATE_HOME, then ~/.local/state."""
    assert default_state_dir(env) == Path(expected)


def test_ledger_name_tells_folders_apart(tmp_path: Path) -> None:
    """Two folders with one basename get different ledgers; a name is stable."""
    a, b = tmp_path / "x" / "data", tmp_path / "y" / "data"
    assert ledger_name(a) != ledger_name(b)
    assert ledger_name(a) == ledger_name(a)
    assert ledger_name(a).startswith("data-") and ledger_name(a).endswith(".db")


def test_state_path_forms(tmp_path: Path) -> None:
    """--state DIR holds named ledgers; --state FILE.db is the ledger itself."""
    folder = tmp_path / "data"
    folder.mkdir()
    assert ledger_path(folder, tmp_path / "st", {}) == tmp_path / "st" / ledger_name(folder)
    assert ledger_path(folder, tmp_path / "one.db", {}) == tmp_path / "one.db"
    assert ledger_path(folder, None, {"XDG_STATE_HOME": str(tmp_path)}).parent == tmp_path / "syncd"


def test_state_inside_folder_is_refused(tmp_path: Path) -> None:
    """A ledger inside the mirrored folder is a config error naming --state."""
    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises(ConfigError, match="--state"):
        ledger_path(folder, folder / ".syncd", {})
    with pytest.raises(ConfigError):
        ledger_path(folder, None, {"XDG_STATE_HOME": str(folder)})


def test_find_ledgers(tmp_path: Path) -> None:
    """find_ledgers lists the .db files of a state directory."""
    (tmp_path / "a-1.db").write_bytes(b"")
    (tmp_path / "a-1.db.lock").write_bytes(b"")
    assert find_ledgers(tmp_path, {}) == [tmp_path / "a-1.db"]
    assert find_ledgers(tmp_path / "missing", {}) == []
