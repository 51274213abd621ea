"""Is the mirrored folder still the folder we mirrored? (The daemon's unmount guard.)

An unmounted disk or a renamed folder must never read as "every file deleted". The
daemon records the folder's ``(st_dev, st_ino)`` in the ledger and, before each pass,
compares: :func:`folder_problem` says whether to pause, and why.
"""

from __future__ import annotations

from syncd.local.fingerprint import Identity


def folder_problem(
    folder: str,
    identity: Identity | None,
    recorded: Identity | None,
    *,
    empty: bool,
    tracked: int,
) -> str | None:
    """Why the folder must not be mirrored as it is now, or None when it may be.

    Pure. ``identity`` is the folder's now (None: missing or not a directory),
    ``recorded`` the one the ledger remembers, ``tracked`` how many files are mirrored.
    """
    advice = "paused, nothing deleted; waiting for it to come back"
    if identity is None:
        return f"folder {folder} is gone (unmounted or renamed away?): {advice}"
    if tracked == 0:
        return None  # nothing mirrored, nothing a wrong folder could make us delete
    override = "(restart with --accept-folder-change if this is the right folder now)"
    if recorded is not None and identity[0] != recorded[0]:
        return (
            f"folder {folder} is on another filesystem than before (device {identity[0]}, "
            f"was {recorded[0]}): unmounted? {advice} {override}"
        )
    if empty and identity != recorded:
        return (
            f"folder {folder} is empty but {tracked} files are mirrored from it "
            f"(unmounted disk?): {advice} {override}"
        )
    return None
