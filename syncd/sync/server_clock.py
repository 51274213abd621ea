"""The offset between this host's clock and the server's: measured, used, remembered.

``created_at`` is stamped by the server's clock, the ledger's times by ours; windows
(``syncd.sync.ownership``) need the difference. ``ServerClock`` gathers samples: the
``Date`` of the remote's answers (a remote that ``SupportsServerClock``) and the
``created_at`` of our own confirmed uploads (``note_upload``), and ``offset()`` is their
estimate (the largest set that agrees, intersected). The estimate is kept in the
ledger's meta (``server_clock``: low, high, when) by ``save()``, so that a process that
has not yet heard from the server (a restart reconciling first) starts from it. With no
sample and nothing kept, the offset is ``UNMEASURED`` (±120 s, the old fixed slack).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable

import structlog

from syncd.remote.protocol import FilesRemote, SupportsServerClock
from syncd.state.ledger import Ledger
from syncd.sync.ownership import UNMEASURED, Offset, created_sample, date_sample, estimate

META_SERVER_CLOCK = "server_clock"
UPLOAD_SAMPLES = 32
SAVE_CHANGE_SECONDS = 0.1  # a smaller change of the estimate is not worth a write

log = structlog.get_logger(__name__)


class ServerClock:
    """The server-clock offset for one ledger and remote (see the module docstring)."""

    def __init__(
        self, ledger: Ledger, remote: FilesRemote, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.ledger = ledger
        self.remote = remote
        self.clock = clock
        self._uploads: deque[Offset] = deque(maxlen=UPLOAD_SAMPLES)
        self._lock = threading.Lock()
        self._saved = self._load()

    def note_upload(self, sent: float, answered: float, created_at: int) -> None:
        """An upload of ours sent at ``sent``, answered at ``answered``, was stamped
        ``created_at`` (thread-safe)."""
        with self._lock:
            self._uploads.append(created_sample(sent, answered, created_at))

    def measured(self) -> Offset | None:
        """The estimate from this process's samples, None without any."""
        samples: list[Offset] = []
        if isinstance(self.remote, SupportsServerClock):
            samples += [date_sample(s, r, d) for s, r, d in self.remote.date_samples()]
        with self._lock:
            samples += list(self._uploads)
        return estimate(samples)

    def offset(self) -> Offset:
        """The offset to use now: measured, else the kept one, else ``UNMEASURED``."""
        return self.measured() or self._saved or UNMEASURED

    def save(self) -> None:
        """Keep the current estimate in the ledger if it changed noticeably."""
        current = self.measured()
        if current is None:
            return
        saved = self._saved
        if saved is not None and (
            abs(saved.low - current.low) < SAVE_CHANGE_SECONDS
            and abs(saved.high - current.high) < SAVE_CHANGE_SECONDS
        ):
            return
        value = {**current.to_json(), "measured_at": round(self.clock(), 3)}
        self.ledger.set_meta(META_SERVER_CLOCK, json.dumps(value))
        if saved is None or abs((saved.low + saved.high) - (current.low + current.high)) > 2.0:
            log.info("server_clock_offset", low=value["low"], high=value["high"])
        self._saved = current

    def _load(self) -> Offset | None:
        text = self.ledger.get_meta(META_SERVER_CLOCK)
        if not text:
            return None
        try:
            data = json.loads(text)
            return Offset(float(data["low"]), float(data["high"]))
        except (ValueError, KeyError, TypeError):
            return None
