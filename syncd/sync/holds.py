"""Which deletes wait because an upload is failing (rclone's "no deletes on errors", narrowed).

A delete must not remove the only remote copy of content that lives on locally under
another path whose upload fails (a rename, a copy). So a delete waits when a failing
file -- one that failed in this pass, or one waiting to retry -- has its mirrored content
(same SHA-256; or, the failing content's hash being unknown, the same size); every
delete waits when the key was refused or a failing file is not even known by its size.
A permanent failure holds deletes back only in the pass it happens (it is not retried
until the file changes, so holding would keep a deleted file remote for good). Other
deletes go ahead, so that under steady faults deletes do not starve (the soak showed
the all-or-nothing rule starving them until the mass-delete guard refused the backlog).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence

from syncd.local.fingerprint import Fingerprint
from syncd.sync.plan import Action

# (SHA-256, size) of a failing content; (None, size) when it failed before it was
# hashed, (None, None) when not even its size is known.
Content = tuple[str | None, int | None]


def held_back(
    deletes: Sequence[Action], failing: Collection[Content], *, key_refused: bool
) -> list[Action]:
    """The deletes that must wait (see the module docstring). Pure."""
    if not deletes:
        return []
    if key_refused or (None, None) in failing:
        return list(deletes)
    hashes = {sha for sha, _ in failing if sha is not None}
    sizes_unhashed = {size for sha, size in failing if sha is None}
    sizes = {size for _, size in failing}

    def waits(action: Action) -> bool:
        row = action.row
        if row is None:
            return True
        if row.sha256 is None:  # the mirrored content is in doubt: match by size
            return row.size in sizes
        return row.sha256 in hashes or row.size in sizes_unhashed

    return [a for a in deletes if waits(a)]


class FailedContent:
    """The content of every upload that failed in this pass (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._content: set[Content] = set()

    def clear(self) -> None:
        with self._lock:
            self._content.clear()

    def add(self, fingerprint: Fingerprint | None) -> None:
        content: Content = (fingerprint.sha256, fingerprint.size) if fingerprint else (None, None)
        with self._lock:
            self._content.add(content)

    def snapshot(self) -> set[Content]:
        with self._lock:
            return set(self._content)
