"""Every ledger of this user on this host, so that each can respect the others' files.

A remote file that any ledger of this host has recorded is never a candidate for
another ledger's reconciliation, whatever ``--state`` each uses and whichever daemon or
command opened it. To find them all, each ledger opened for writing is registered in
the *state home* (``$STATE_DIRECTORY`` under systemd, else ``$XDG_STATE_HOME/syncd``,
else ``~/.local/state/syncd``: ``syncd.paths.default_state_dir``), also when the ledger
itself lives elsewhere::

    <state home>/ledgers/<sha256(path)[:16]>.ledger     holding the ledger's absolute path

An entry is written atomically (a temporary file renamed into place) and never needs a
lock. ``ledgers()`` lists the registered ledgers that still exist, plus every ``*.db``
ledger directly in the state home (ledgers made before the registry existed); entries
whose ledger is gone are skipped (said at debug level) and removed at the next
registration. Reading the ledgers themselves is ``syncd.state.ledger.read_claims``'s job.

Ledgers of other users, or of a service with its own state directory, are not seen:
to each other they are like another host.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import structlog

from syncd.paths import LEDGER_SUFFIX, default_state_dir

ENTRY_SUFFIX = ".ledger"

log = structlog.get_logger(__name__)


class LedgerRegistry:
    """The registry of ledgers in one state home (see the module docstring)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.directory = home / "ledgers"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LedgerRegistry:
        """The registry of the state home ``env`` names."""
        return cls(default_state_dir(env))

    def register(self, ledger: Path) -> None:
        """Record ``ledger`` (idempotent). Failing to write is logged, not raised: the
        ledger still works, but other ledgers of this host cannot see its files."""
        target = str(ledger.resolve())
        name = hashlib.sha256(os.fsencode(target)).hexdigest()[:16] + ENTRY_SUFFIX
        entry = self.directory / name
        try:
            if _read_entry(entry) == target:
                self._prune()
                return
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            temp = self.directory / f".{name}.{os.getpid()}.tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(target + "\n")
                file.flush()
                os.fsync(file.fileno())
            temp.replace(entry)
        except OSError as exc:
            log.warning("ledger_not_registered", ledger=target, error=str(exc))
            return
        self._prune()

    def ledgers(self) -> list[Path]:
        """Every ledger known here that still exists (resolved paths, sorted)."""
        found: set[Path] = set()
        for entry in self._entries():
            text = _read_entry(entry)
            if text is None:
                continue
            path = Path(text)
            if path.is_file():
                found.add(path)
            else:
                log.debug("registered_ledger_gone", ledger=text, entry=str(entry))
        with contextlib.suppress(OSError):
            found |= {p.resolve() for p in self.home.iterdir() if p.name.endswith(LEDGER_SUFFIX)}
        return sorted(found)

    def _entries(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.iterdir() if p.name.endswith(ENTRY_SUFFIX))
        except OSError:
            return []

    def _prune(self) -> None:
        """Remove entries whose ledger no longer exists."""
        for entry in self._entries():
            text = _read_entry(entry)
            if text is not None and not Path(text).exists():
                with contextlib.suppress(OSError):
                    entry.unlink()


def _read_entry(entry: Path) -> str | None:
    try:
        text = entry.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None
