"""Signs of life in the ledger while uploads are in flight.

After a crash, an upload intent left open must still have an end to its window (the
last moment its request could have been received, ``syncd.sync.ownership``). While the
engine has uploads in flight, ``Heartbeat`` writes the time into the ledger's meta
(``Ledger.heartbeat``) when it starts and then every ``period`` seconds, on a thread of
its own so that one long request (a large file) is covered too; the next process to
open the ledger seals every open upload intent with it (``alive_at``). One small write
every few seconds, not one per request: each is an fsync (``synchronous=FULL``).

A write that fails is logged and the beats go on: the sure part of a window then ends
earlier, and a copy stored after it is kept and reported rather than adopted.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from types import TracebackType

import structlog

from syncd.state.ledger import Ledger

HEARTBEAT_SECONDS = 2.0

log = structlog.get_logger(__name__)


class Heartbeat:
    """``with Heartbeat(ledger, clock):`` beats while the block runs (module docstring).

    ``period`` ``math.inf`` beats only once, at the start, and starts no thread (tests
    that must run deterministically).
    """

    def __init__(
        self,
        ledger: Ledger,
        clock: Callable[[], float] = time.time,
        period: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self.period = period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        try:
            self.ledger.heartbeat(now=self.clock())
        except Exception as exc:  # a missed beat must not stop the uploads
            log.warning("heartbeat_failed", error=str(exc))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.beat()

    def __enter__(self) -> Heartbeat:
        self.beat()
        if math.isfinite(self.period):
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="syncd-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
