"""Asking how indexing goes: deadlines, and polls per batch or per file, with backoff.

``IndexPoller`` is one step's part of ``syncd.sync.vectors`` that reads the store and
records what it says, never waiting: a file whose poll is not due is not asked about.

- Past its deadline a file still ``in_progress`` fails (retryable: detached and
  attached again after the backoff).
- Files attached in one batch are asked about through the batch: one request
  (``GET .../file_batches/{id}``) while the number of files done has not moved since the
  last poll; when it has, the batch's files indexing, failed and cancelled are listed
  (usually short lists), and the batch's other files are done.
- A file attached alone is retrieved. A file gone from the store (detached by someone
  else) is pending again: the next plan attaches it.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import structlog

from syncd.errors import NotFoundError, RemoteError
from syncd.remote.vector_stores import VectorStoresApi
from syncd.state.vector_ledger import Attachment, VectorLedger
from syncd.sync.vector_states import failure, pending, poll_later, status_change
from syncd.vector_api import StoreFile

log = structlog.get_logger(__name__)

Each = Callable[[Sequence[Attachment], Callable[[Attachment], Any]], list[Any]]


class IndexPoller:
    """Deadlines and polls of one mirror's store (see the module docstring)."""

    def __init__(
        self,
        vl: VectorLedger,
        api: VectorStoresApi,
        *,
        indexing_deadline: float,
        clock: Callable[[], float],
        each: Each,
        stop: threading.Event,
    ) -> None:
        self.vl = vl
        self.api = api
        self.indexing_deadline = indexing_deadline
        self.clock = clock
        self.each = each  # runs work over rows, a few at a time
        self.stop = stop
        self._batch_done: dict[str, int] = {}  # batch id -> files done at its last poll

    def expire(self, rows: Sequence[Attachment]) -> None:
        """Files still indexing past their deadline: failures, retried after the backoff."""
        now = self.clock()
        reason = f"still indexing after {self.indexing_deadline:g} s (indexing_deadline)"
        self.vl.update_many(
            (row.store_id, row.file_id, failure(row, reason, False, now)) for row in rows
        )
        for row in rows:
            log.warning("vector_indexing_stalled", path=row.path, file_id=row.file_id)

    def poll(self, store_id: str, rows: Sequence[Attachment]) -> None:
        """Ask how the indexing of ``rows`` goes: per batch when they came in one."""
        groups: dict[str | None, list[Attachment]] = defaultdict(list)
        for row in rows:
            groups[row.batch_id].append(row)
        singles = list(groups.pop(None, []))
        for batch_id, group in groups.items():
            if self.stop.is_set():
                return
            singles += self._poll_batch(store_id, batch_id or "", group)
        self.each(singles, lambda row: self._poll_file(store_id, row))

    def _change(self, row: Attachment, found: StoreFile, now: float, **kw: Any) -> dict[str, Any]:
        return status_change(row, found, now, indexing_deadline=self.indexing_deadline, **kw)

    def _poll_batch(
        self, store_id: str, batch_id: str, group: list[Attachment]
    ) -> list[Attachment]:
        """Poll one batch; returns the rows to ask about one by one."""
        now = self.clock()
        try:
            batch = self.api.retrieve_batch(store_id, batch_id)
        except NotFoundError:
            return group
        except RemoteError as exc:
            log.warning("vector_poll_failed", batch_id=batch_id, error=str(exc))
            self.vl.update_many((r.store_id, r.file_id, poll_later(r, now)) for r in group)
            return []
        counts = batch.file_counts
        done = counts.completed + counts.failed + counts.cancelled
        if batch.status == "in_progress" and self._batch_done.get(batch_id) == done:
            self.vl.update_many((r.store_id, r.file_id, poll_later(r, now)) for r in group)
            return []  # nothing changed since the last poll: one request was enough
        self._batch_done[batch_id] = done
        by_status: dict[str, StoreFile] = {}
        for status in ("in_progress", "failed", "cancelled"):
            for listed in _listing(self.api.list_batch_files, store_id, batch_id, status):
                by_status[listed.file_id] = listed
        changes = []
        for row in group:
            found = by_status.get(row.file_id)
            if found is None:  # neither indexing, failed nor cancelled: done
                done_file = StoreFile(row.file_id, store_id, "completed")
                change = self._change(row, done_file, now, seen=False)
            elif found.status == "in_progress":
                change = poll_later(row, now)
            else:
                change = self._change(row, found, now)
            changes.append((row.store_id, row.file_id, change))
        self.vl.update_many(changes)
        return []

    def _poll_file(self, store_id: str, row: Attachment) -> None:
        now = self.clock()
        try:
            found = self.api.retrieve_file(store_id, row.file_id)
        except NotFoundError:  # detached by someone: attached again by the next plan
            self.vl.update(store_id, row.file_id, **pending(now))
            return
        except RemoteError as exc:
            log.warning("vector_poll_failed", path=row.path, error=str(exc))
            self.vl.update(store_id, row.file_id, **poll_later(row, now))
            return
        self.vl.update(store_id, row.file_id, **self._change(row, found, now))


def _listing(lister: Callable[..., Iterator[StoreFile]], *args: Any) -> list[StoreFile]:
    try:
        return list(lister(*args))
    except NotFoundError:
        return []
