"""The daemon's one-line ``STATUS=`` text, from per-mirror counts and the remote's pacing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from syncd.durations import format_duration
from syncd.remote.protocol import PacingStatus


@dataclass(frozen=True)
class MirrorStatus:
    """What one mirror contributes to the status line."""

    folder: str
    mirrored: int
    pending: int
    failed: int
    retrying: int = 0
    next_retry_in: float | None = None
    paused: str | None = None
    refusal: str | None = None
    queued: int = 0  # paths waiting to be looked at (the metrics' queue depth)
    delayed: int = 0  # delete_delay: remote copies waiting to be deleted
    next_delete_in: float | None = None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def status_line(
    mirrors: Sequence[MirrorStatus],
    paused: str | None = None,
    pacing: Sequence[PacingStatus] = (),
    *,
    log_lines_dropped: int = 0,
) -> str:
    """``paused: ...; mirrored N files, M pending, K failed; uploads paced at 600/min
    (server limit)`` (one line, for STATUS=); a route is named while it holds requests
    back.

    ``log_lines_dropped``: log lines lost because stderr could not be written (its
    reader went away); STATUS= reaches systemd by another way, so it can still say so.
    """
    parts: list[str] = []
    if paused:
        parts.append(f"paused: {paused}")
    parts += [f"paused: {m.paused}" for m in mirrors if m.paused]
    parts += [m.refusal for m in mirrors if m.refusal]
    counts = (
        f"mirrored {_plural(sum(m.mirrored for m in mirrors), 'file')}"
        + (f" in {len(mirrors)} folders" if len(mirrors) > 1 else "")
        + f", {sum(m.pending for m in mirrors)} pending"
        + f", {sum(m.failed for m in mirrors)} failed"
    )
    retrying = sum(m.retrying for m in mirrors)
    waits = [m.next_retry_in for m in mirrors if m.next_retry_in is not None]
    if retrying and waits:
        counts += f" ({retrying} retrying, next in {max(0, round(min(waits)))} s)"
    elif retrying:
        counts += f" ({retrying} retrying)"
    delayed = sum(m.delayed for m in mirrors)
    due = [m.next_delete_in for m in mirrors if m.next_delete_in is not None]
    if delayed:
        counts += f", {_plural(delayed, 'delete')} delayed"
        if due:
            counts += f" (next in {format_duration(max(0.0, min(due)))})"
    parts.append(counts)
    parts += [route.describe() for route in pacing if route.paced]
    if log_lines_dropped:
        parts.append(f"{_plural(log_lines_dropped, 'log line')} lost (stderr unwritable)")
    return "; ".join(parts)
