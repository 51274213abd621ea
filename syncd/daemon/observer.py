"""What the daemon tells an observer (the metrics endpoint) about each mirror's work.

A Protocol, so that the daemon never imports ``prometheus_client``: ``syncd.daemon.metrics``
implements it, and without ``--metrics`` nothing is observed. Calls come from the
mirrors' threads (``action_finished`` from the engine's collecting thread); an
implementation must be quick and thread-safe.
"""

from __future__ import annotations

from typing import Protocol

from syncd.sync.result import Outcome, PassResult


class DaemonObserver(Protocol):
    def action_finished(self, folder: str, outcome: Outcome) -> None:
        """One upload, replace or delete ended (however it ended)."""

    def pass_finished(self, folder: str, kind: str, result: PassResult) -> None:
        """A pass ended; ``kind`` is ``full`` or ``changes``."""
