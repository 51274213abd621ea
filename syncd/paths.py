"""Where syncd keeps its state: the state directory and each folder's ledger file.

Resolution order for the state directory (the first that applies):

1. ``--state PATH`` given by the user. A path ending in ``.db`` names the ledger file
   itself; anything else is a directory holding one ledger per mirrored folder.
2. ``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``; the first entry when it
   lists several, separated by ``:``).
3. ``$XDG_STATE_HOME/syncd``, by default ``~/.local/state/syncd``.

A ledger is named from the folder's absolute path (``<basename>-<sha256[:12]>.db``), so
two folders with the same name never share one, and it may never live inside the folder
it mirrors (it would mirror itself and vanish with the folder).

This module only computes paths; it reads the environment through the mapping it is
given so that callers (config, tests) decide what the environment is.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from syncd.errors import ConfigError

LEDGER_SUFFIX = ".db"


def default_state_dir(env: Mapping[str, str]) -> Path:
    """The state directory when the user named none (systemd, then XDG, then ~)."""
    systemd_dirs = env.get("STATE_DIRECTORY", "")
    if systemd_dirs:
        return Path(systemd_dirs.split(":")[0])
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative values
        return Path(xdg) / "syncd"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "syncd"


def ledger_name(folder: Path) -> str:
    """The ledger's file name for ``folder``: readable basename plus a hash of its path."""
    absolute = folder.resolve()  # one ledger per real folder, however it is spelt
    digest = hashlib.sha256(os.fsencode(absolute)).hexdigest()[:12]
    base = absolute.name or "root"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base)
    return f"{safe}-{digest}{LEDGER_SUFFIX}"


def ledger_path(folder: Path, state: Path | None, env: Mapping[str, str]) -> Path:
    """The absolute path of ``folder``'s ledger; refuses one inside the folder itself."""
    if state is not None and state.name.endswith(LEDGER_SUFFIX):
        path = state.absolute()
    else:
        directory = state if state is not None else default_state_dir(env)
        path = directory.absolute() / ledger_name(folder)
    refuse_inside(path, folder)
    return path


def refuse_inside(path: Path, folder: Path) -> None:
    """Raise ConfigError when ``path`` is (or would be) inside ``folder``."""
    real_folder = folder.resolve()
    real_path = path.resolve()
    if real_path == real_folder or real_folder in real_path.parents:
        raise ConfigError(
            f"state path {path} is inside the mirrored folder {folder}; choose another with --state"
        )


def find_ledgers(state: Path | None, env: Mapping[str, str]) -> list[Path]:
    """Every ledger in the state directory (or the one file ``state`` names)."""
    if state is not None and state.name.endswith(LEDGER_SUFFIX):
        return [state] if state.exists() else []
    directory = state if state is not None else default_state_dir(env)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(LEDGER_SUFFIX))
