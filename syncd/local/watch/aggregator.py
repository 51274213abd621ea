"""Hints and their debouncing: which paths to look at again, and when.

Hints (what a watcher reports), relative and ``/``-separated:

- ``"a/b.txt"``: look at this file path again (it may now exist or not).
- ``"a/b/"`` (trailing ``/``): a *directory* was created, deleted or moved; look at that
  path and **everything under it** (:func:`hint_covers`).

:class:`DirtyPathAggregator` (pure, thread-safe, clock passed in) debounces hints per
path and carries the "full rescan needed" flag.
"""

from __future__ import annotations

import threading

SUBTREE_SUFFIX = "/"
"""A hint ending with this covers the directory and everything under it."""


def is_subtree_hint(hint: str) -> bool:
    """True for a directory hint, which stands for everything under that directory."""
    return hint.endswith(SUBTREE_SUFFIX)


def hint_covers(hint: str, path: str) -> bool:
    """Whether handling ``hint`` must look at the relative file ``path``."""
    if is_subtree_hint(hint):
        return path == hint[:-1] or path.startswith(hint)
    return path == hint


class DirtyPathAggregator:
    """Coalesces hints per path and releases a path once it has been quiet.

    Pure and thread-safe: ``now`` is always passed in (``time.monotonic()`` in the
    daemon, a counter in tests). A path becomes ready when no hint arrived for
    ``debounce`` seconds, or ``max_delay`` seconds after its first pending hint even if
    hints keep coming. Past ``max_paths`` pending paths the hints are dropped and a full
    rescan is requested instead, which bounds memory during a storm of events.
    """

    def __init__(
        self, debounce: float = 1.0, max_delay: float | None = None, max_paths: int = 100_000
    ) -> None:
        if debounce < 0:
            raise ValueError(f"debounce must be >= 0, got {debounce}")
        limit = max(60.0, 10 * debounce) if max_delay is None else max_delay
        if limit < debounce:
            raise ValueError(f"max_delay ({limit}) must be >= debounce ({debounce})")
        if max_paths < 1:
            raise ValueError(f"max_paths must be >= 1, got {max_paths}")
        self.debounce = debounce
        self.max_delay = limit
        self.max_paths = max_paths
        self._lock = threading.Lock()
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._rescan = False

    def note(self, path: str, now: float) -> None:
        """Record a hint for ``path`` at time ``now``; a pending path is deferred again."""
        with self._lock:
            if path in self._last:
                self._last[path] = max(self._last[path], now)
                return
            if len(self._last) >= self.max_paths:
                self._first.clear()
                self._last.clear()
                self._rescan = True
                return
            self._first[path] = now
            self._last[path] = now

    def note_rescan(self) -> None:
        """Ask for a full rescan (events were lost, or too many to track one by one)."""
        with self._lock:
            self._rescan = True

    def take_rescan(self) -> bool:
        """Consume the rescan request: True once per request."""
        with self._lock:
            requested, self._rescan = self._rescan, False
            return requested

    def _due(self, path: str) -> float:
        return min(self._last[path] + self.debounce, self._first[path] + self.max_delay)

    def ready(self, now: float) -> list[str]:
        """Remove and return (sorted) the paths due at ``now``; the caller stats them."""
        with self._lock:
            due = sorted(path for path in self._last if self._due(path) <= now)
            for path in due:
                del self._first[path]
                del self._last[path]
            return due

    def next_due(self, now: float) -> float | None:
        """Seconds until the next path is due (0.0 if one is due), None if none pending."""
        with self._lock:
            if not self._last:
                return None
            return max(0.0, min(self._due(path) for path in self._last) - now)

    def __len__(self) -> int:
        with self._lock:
            return len(self._last)
