"""What a pass records of the remote's pacing, for ``syncd status`` in another process.

The remote's ``Pacer`` (``syncd.remote.protocol.SupportsPacing``) knows at what rate
each route is paced and how long requests waited. A ``PacingRecorder`` takes one
pass's share of it: while the pass runs it writes the ledger's ``meta`` key ``pacing``
at most every ``WRITE_EVERY`` seconds (one small transaction), and when it ends the
final figures, which also go into the pass summary (``PassResult.pacing``). The
``meta`` value is JSON::

    {"pass_started_at": 1700000000.0, "updated_at": 1700000060.5, "finished": false,
     "routes": [{"route": "create", "per_minute": 600.0, "source": "server limit",
                 "paced_since": 1700000001.2, "delayed_requests": 590, ...}]}

Only routes that held requests back or met a 429 during the pass are listed; a pass
that paced nothing writes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from syncd.remote.protocol import FilesRemote, PacingStatus, SupportsPacing
from syncd.state.ledger import Ledger

META_PACING = "pacing"
WRITE_EVERY = 2.0


def pacing_of(remote: FilesRemote) -> tuple[PacingStatus, ...]:
    """The remote's pacing per route (none for a remote that does not pace)."""
    return remote.pacing_status() if isinstance(remote, SupportsPacing) else ()


class PacingRecorder:
    """One pass's share of the remote's pacing, recorded in the ledger (module docstring)."""

    def __init__(
        self,
        remote: FilesRemote,
        ledger: Ledger,
        started_at: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._remote = remote
        self._ledger = ledger
        self._started_at = started_at
        self._clock = clock
        self._wall = wall
        self._start = {s.route: s for s in pacing_of(remote)}
        self._next_write = clock() + WRITE_EVERY
        self._written = False

    def routes(self) -> list[PacingStatus]:
        """This pass's share of each route that held requests back or met a 429."""
        found = []
        for status in pacing_of(self._remote):
            share = status.minus(self._start.get(status.route))
            if share.delayed_requests or share.rate_limited or share.waiting:
                found.append(share)
        return found

    def note(self) -> None:
        """Write the current figures if ``WRITE_EVERY`` passed since the last write."""
        now = self._clock()
        if now < self._next_write:
            return
        self._next_write = now + WRITE_EVERY
        self._write(self.routes(), finished=False)

    def finish(self) -> list[dict[str, Any]]:
        """The pass's figures (for its summary), written to the ledger a last time."""
        routes = self.routes()
        self._write(routes, finished=True)
        return [r.to_json() for r in routes]

    def _write(self, routes: list[PacingStatus], *, finished: bool) -> None:
        if not routes and not self._written:
            return
        self._written = True
        document = {
            "pass_started_at": self._started_at,
            "updated_at": self._wall(),
            "finished": finished,
            "routes": [r.to_json() for r in routes],
        }
        self._ledger.set_meta(META_PACING, json.dumps(document))
