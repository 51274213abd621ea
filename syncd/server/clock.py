"""The server's clock: unix time, shifted by ``syncd serve --clock-offset`` (0 by default).

Every time the server stamps or compares (``created_at``, ``expires_at``, an upload's
hour, the ``Date`` header) comes from ``now()``, so a test can run a server whose clock
is minutes off the client's, as a real server's may be. Set once at start-up, before
the first request; an embedded server (``--local``) never shifts it.
"""

from __future__ import annotations

import time

_offset = 0.0


def now() -> float:
    """The server's unix time."""
    return time.time() + _offset


def set_offset(seconds: float) -> None:
    """Shift the server's clock by ``seconds`` (positive: ahead of this host's)."""
    global _offset
    _offset = float(seconds)
