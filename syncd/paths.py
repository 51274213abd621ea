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

This module computes paths; it reads the environment through the mapping it is given
so that callers (config, tests) decide what the environment is. One check looks at the
disk: ``check_state_dir``. Whoever can write the state directory can plant a link where
the ledger or its lock goes, so syncd refuses a state directory that group or others
may write (``g+w``/``o+w``; the 0755 of a ``mkdir`` under umask 022 is fine), and, to
write a ledger, one that is not its own. The directory itself may be reached through a
link (systemd's ``DynamicUser=`` makes ``/var/lib/syncd`` one); the ledger and the lock
inside it are never opened through one (``syncd.state.ledger``, ``syncd.state.lock``).
"""

from __future__ import annotations

import hashlib
import os
import stat
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


def check_state_dir(directory: Path, *, writing: bool) -> None:
    """Refuse a state directory that others could plant links in (module docstring):
    ``ConfigError`` naming it and saying how to fix it. ``writing``: a ledger will be
    written, so the directory must also be this user's. A missing directory passes
    (whoever creates it makes it 0700)."""
    try:
        st = directory.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(
            f"state directory {directory}: {exc.strerror or type(exc).__name__}"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"state directory {directory} is not a directory")
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = (
            "its group and others"
            if mode & stat.S_IWGRP and mode & stat.S_IWOTH
            else ("its group" if mode & stat.S_IWGRP else "others")
        )
        raise ConfigError(
            f"state directory {directory} is writable by {who} (mode {mode:04o}), who could "
            f"plant links where the ledger goes; run `chmod 700 {directory}` or choose "
            "another with --state"
        )
    if writing and st.st_uid != os.geteuid():
        raise ConfigError(
            f"state directory {directory} belongs to uid {st.st_uid}, not to this user "
            f"(uid {os.geteuid()}); use a state directory of your own (--state)"
        )
