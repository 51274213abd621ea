"""What one vector store step reports, and how it is said (summary lines, JSON).

Kept apart from ``syncd.sync.vectors`` so that results, commands and the daemon can use
it without the machinery (as ``syncd.sync.result`` is for the Files side).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class VectorReport:
    """The store's state after one step: counts over the files it should hold, and what
    this step did. ``in_progress`` counts files not indexed yet (attaching, indexing, or
    waiting to be attached); ``waiting`` old versions kept until their successor is."""

    store: str  # as the config names it: vs_abc123 or 'docs'
    store_id: str | None = None
    completed: int = 0
    in_progress: int = 0
    failed: int = 0
    attached: int = 0
    updated: int = 0
    retired: int = 0
    waiting: int = 0
    foreign: int = 0
    usage_bytes: int | None = None
    expires_at: int | None = None
    failures: list[tuple[str, str, bool]] = field(default_factory=list)  # path, why, permanent
    skipped: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the store could not be kept this step
    warnings: list[str] = field(default_factory=list)
    next_due: float | None = None  # unix time the next step has work (polls, retries)
    interrupted: bool = False

    @property
    def settled(self) -> bool:
        """Nothing is indexing any more: waiting longer would change nothing now."""
        return bool(self.errors) or (not self.in_progress and not self.waiting)

    @property
    def exact(self) -> bool:
        """The store holds exactly the folder's files, each indexed."""
        return (
            not self.errors
            and not self.failures
            and not self.skipped
            and not self.in_progress
            and not self.waiting
            and not self.interrupted
        )

    def counts_line(self) -> str:
        where = (
            self.store if self.store_id in (None, self.store) else f"{self.store_id} ({self.store})"
        )
        line = (
            f"vector store {where}: {self.completed} completed, {self.in_progress} in progress, "
            f"{self.failed} failed"
        )
        if self.waiting:
            line += f", {self.waiting} old versions kept until their successor is indexed"
        if self.foreign:
            line += f"; {self.foreign} files attached by others (left alone)"
        return line

    def lines(self) -> list[str]:
        """What ``syncd sync`` says about the store, one line each."""
        out = [f"vector store {self.store}: {e}" for e in self.errors]
        out += [f"warning: {w}" for w in self.warnings]
        for path, reason, permanent in self.failures:
            when = "not retried until the file changes" if permanent else "retried with backoff"
            out.append(f"failed: {path}: vector store {self.store}: {reason} ({when})")
        out += [f"not attached: {path}: {reason}" for path, reason in self.skipped]
        if self.interrupted and self.in_progress:
            out.append(
                f"stopped waiting: {self.in_progress} files still indexing in vector store "
                f"{self.store}; the next sync (or the daemon) picks them up"
            )
        out.append(self.counts_line())
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "id": self.store_id,
            "exact": self.exact,
            "completed": self.completed,
            "in_progress": self.in_progress,
            "failed": self.failed,
            "attached": self.attached,
            "updated": self.updated,
            "retired": self.retired,
            "waiting": self.waiting,
            "foreign": self.foreign,
            "usage_bytes": self.usage_bytes,
            "expires_at": self.expires_at,
            "failures": [
                {"path": p, "reason": r, "permanent": perm} for p, r, perm in self.failures
            ],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "errors": self.errors,
            "warnings": self.warnings,
            "interrupted": self.interrupted,
        }
