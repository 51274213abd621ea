"""The ledger, its lock and the state directory are never reached through someone's link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.errors import ConfigError
from syncd.paths import check_state_dir
from syncd.state.ledger import Ledger


@pytest.fixture
def state(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    return directory


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o777, 0o1777])
def test_a_state_directory_others_may_write_is_refused(state: Path, mode: int) -> None:
    """g+w or o+w (sticky or not): ConfigError naming the directory and `chmod 700`;
    nothing is created in it."""
    state.chmod(mode)
    for open_ledger in (Ledger.open, Ledger.open_readonly):
        with pytest.raises(ConfigError) as info:
            open_ledger(state / "a.db")
        assert str(state) in str(info.value) and "chmod 700" in str(info.value)
    assert list(state.iterdir()) == []


@pytest.mark.parametrize("mode", [0o700, 0o750, 0o755])
def test_the_usual_modes_are_fine(state: Path, mode: int) -> None:
    """0755 from a mkdir under umask 022, 0700 from systemd, 0750: accepted."""
    state.chmod(mode)
    Ledger.open(state / "a.db").close()
    assert Ledger.open_readonly(state / "a.db").schema_version() > 0


def test_a_state_directory_reached_through_a_link_is_fine(tmp_path: Path) -> None:
    """systemd's DynamicUser= makes /var/lib/NAME a link: the directory may be one."""
    real = tmp_path / "private" / "syncd"
    real.mkdir(parents=True, mode=0o700)
    link = tmp_path / "syncd"
    link.symlink_to(real)
    Ledger.open(link / "a.db").close()
    assert (real / "a.db").is_file()


def test_a_state_directory_of_another_user_is_refused_for_writing(state: Path) -> None:
    """Another user's directory could hold their links: no ledger is written there
    (reading, as `syncd status` by an admin does, is allowed)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory to another user")
    os.chown(state, 12345, -1)
    with pytest.raises(ConfigError, match="belongs to uid 12345"):
        check_state_dir(state, writing=True)
    check_state_dir(state, writing=False)


def test_a_ledger_that_is_a_link_is_refused(state: Path, tmp_path: Path) -> None:
    """A link where the ledger goes (to an existing ledger or to /etc/passwd alike):
    ConfigError for writers and readers; the target is untouched."""
    target = tmp_path / "elsewhere.db"
    Ledger.open(target).close()
    before = target.read_bytes()
    (state / "a.db").symlink_to(target)
    for open_ledger in (Ledger.open, Ledger.open_readonly):
        with pytest.raises(ConfigError, match="symbolic link"):
            open_ledger(state / "a.db")
    assert target.read_bytes() == before


def test_a_dangling_link_where_a_new_ledger_goes_creates_nothing(
    state: Path, tmp_path: Path
) -> None:
    """O_CREAT through a dangling link would create the target: refused instead."""
    target = tmp_path / "created-elsewhere.db"
    (state / "a.db").symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        Ledger.open(state / "a.db")
    assert not target.exists()


@pytest.mark.parametrize("side", ["a.db-wal", "a.db-shm", "a.db.lock"])
def test_a_link_as_a_side_file_is_refused(state: Path, tmp_path: Path, side: str) -> None:
    """SQLite's -wal/-shm and the lock file are not opened through a link either."""
    target = tmp_path / "victim"
    target.write_text("keep")
    (state / side).symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        Ledger.open(state / "a.db")
    assert target.read_text() == "keep"


def test_a_new_ledger_is_private(state: Path) -> None:
    """A ledger is created 0600 and a missing state directory 0700."""
    Ledger.open(state / "new" / "a.db").close()
    assert (state / "new").stat().st_mode & 0o777 == 0o700
    assert (state / "new" / "a.db").stat().st_mode & 0o777 == 0o600
