"""The paths to look at again: one owner for the debounced hints and the durable queue.

Everything that says "look at this path (again)" goes through a ``DirtyQueue``:

- the watcher's hints (``hint``), debounced per path in memory (the aggregator) and
  written to the ledger's ``dirty`` table in batches (``flush``: one transaction per
  batch, not one fsync per event), so that a crash loses none (``restore`` reads them
  back at the next start);
- what a pass could not finish: the engine only *reports* it (``PassResult.requeued``:
  still changing; ``unfinished``: busy, refused, held back, not run because the pass
  was stopped) and ``settle`` queues it again, in memory and on disk (so that it counts
  as pending), and unqueues everything the pass did handle.

``syncd sync`` uses one without hints (only ``settle``: a full pass unqueues the
daemon's leftovers); ``syncd run`` one per mirror. Thread-safe: hints arrive on the
watcher's threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

from syncd.local.watch.aggregator import DirtyPathAggregator, is_subtree_hint
from syncd.state.ledger import Ledger
from syncd.sync.result import PassResult

# A path a pass could not finish (busy, held back) is looked at again this much later.
UNFINISHED_RETRY_SECONDS = 5.0


class DirtyQueue:
    """See the module docstring. ``clock`` is monotonic (the aggregator's time)."""

    def __init__(
        self,
        ledger: Ledger,
        debounce: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.aggregator = DirtyPathAggregator(debounce)
        self._clock = clock
        self._lock = threading.Lock()
        self._unwritten: set[str] = set()

    @property
    def debounce(self) -> float:
        return self.aggregator.debounce

    # -- hints -------------------------------------------------------------------------

    def hint(self, hint: str) -> float:
        """Note a watcher hint (any thread); returns when it may be due (monotonic)."""
        now = self._clock()
        self.aggregator.note(hint, now)
        with self._lock:
            self._unwritten.add(hint)
        return now + self.aggregator.debounce

    def note(self, path: str, at: float) -> None:
        """Look at ``path`` again once quiet from ``at`` (monotonic) on; in memory only
        (it is in the durable queue already)."""
        self.aggregator.note(path, at)

    def request_rescan(self) -> None:
        self.aggregator.note_rescan()

    def take_rescan(self) -> bool:
        return self.aggregator.take_rescan()

    def ready(self, now: float) -> list[str]:
        """The hinted paths quiet at ``now``, taken out of the in-memory queue."""
        return self.aggregator.ready(now)

    def next_due(self, now: float) -> float | None:
        return self.aggregator.next_due(now)

    def flush(self) -> None:
        """Write the hints noted since the last flush to the durable queue."""
        with self._lock:
            hints, self._unwritten = self._unwritten, set()
        if hints:
            self.ledger.mark_dirty(hints, now=time.time())

    def restore(self) -> None:
        """Put what the durable queue holds (a crash's leftovers) back in memory, due now."""
        now = self._clock()
        for path in self.ledger.dirty_paths():
            self.aggregator.note(path, now - self.aggregator.debounce)

    # -- after a pass ----------------------------------------------------------------------

    def settle(
        self, result: PassResult, hints: Collection[str] | None, *, retry_unfinished: bool = True
    ) -> None:
        """After a pass over ``hints`` (None: a full pass, which covers every queued path):
        unqueue what it handled, queue again what it could not finish.

        Still-changing paths are looked at again once quiet; busy and held-back ones
        ``UNFINISHED_RETRY_SECONDS`` later when ``retry_unfinished`` (refused deletes wait
        for the next full pass or the operator). A dry run changes nothing.
        """
        if result.dry_run:
            return
        keep = result.requeued | result.unfinished
        if result.plan is not None:
            handled = set(hints) if hints is not None else set(self.ledger.dirty_paths())
            done = {hint for hint in handled if not _covers_any(hint, keep)}
            self.ledger.clear_dirty(done, queued_before=result.started_at)
        # What the pass left undone stays queued on disk too, so that `syncd status`
        # counts it as pending after a stop or a crash (and a restart looks at it first).
        if result.requeued or result.unfinished:
            self.ledger.mark_dirty(result.requeued | result.unfinished, now=time.time())
        now = self._clock()
        for path in result.requeued:
            self.aggregator.note(path, now)
        if not retry_unfinished or result.fatal or result.plan is None:
            return  # a resume or the next start begins with a full pass anyway
        refused = {action.path for action in result.plan.refused}
        for path in result.unfinished - refused - result.requeued:
            self.aggregator.note(path, now + UNFINISHED_RETRY_SECONDS)


def _covers_any(hint: str, paths: Collection[str]) -> bool:
    """Whether handling ``hint`` includes one of ``paths`` (so it must stay queued)."""
    if hint in paths:
        return True
    if not is_subtree_hint(hint):
        return False
    directory = hint[:-1]
    return any(path == directory or path.startswith(hint) for path in paths)
