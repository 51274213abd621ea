"""``syncd sync`` waits for indexing: one vector store step after another until nothing is
indexing any more, each file's ``indexing_deadline`` bounding the wait.

The daemon never waits: its schedule runs a step when ``VectorSync.next_due()`` says one
has work. A one-shot ``syncd sync`` says "exit 0 = the remote equals the folder", and for
a vector store that means indexed, so it waits here: between steps it sleeps until the
next poll is due (at most ``POLL_MAX_SECONDS``), in the main thread, so that Ctrl-C stops
the wait at once. What is still indexing then is said (and left to the next sync or the
daemon: the ledger holds every attachment's state). Retryable failures are not waited
for: their backoff is minutes; the next sync retries them at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from syncd.sync.engine import SyncEngine
from syncd.sync.result import PassResult
from syncd.sync.vector_report import VectorReport
from syncd.sync.vector_states import POLL_MAX_SECONDS

PROGRESS_EVERY_SECONDS = 5.0


def wait_for_indexing(
    engine: SyncEngine,
    result: PassResult,
    *,
    clock: Callable[[], float] = time.time,
    on_progress: Callable[[VectorReport], None] | None = None,
) -> None:
    """Step the store until it is settled (module docstring); ``result.vectors`` ends as
    the last step saw it (``interrupted`` after Ctrl-C)."""
    report = result.vectors
    if report is None or result.dry_run or result.fatal:
        return
    shown = clock()
    try:
        while not report.settled and report.next_due is not None:
            if engine.wait_for_stop(max(0.0, min(report.next_due - clock(), POLL_MAX_SECONDS))):
                report.interrupted = True  # Ctrl-C or SIGTERM: say what is left, exit
                break
            later = engine.vector_pass()
            if later is None or later.vectors is None:
                break
            if later.fatal:
                result.fatal = later.fatal
                break
            # What earlier steps said (a store made again, say) is still worth saying.
            later.vectors.warnings = list(dict.fromkeys(report.warnings + later.vectors.warnings))
            report = later.vectors
            if on_progress is not None and clock() - shown >= PROGRESS_EVERY_SECONDS:
                on_progress(report)
                shown = clock()
    except KeyboardInterrupt:  # without a signal relay (a library caller)
        report.interrupted = True
    result.vectors = report
    engine.amend_last_pass(result)
