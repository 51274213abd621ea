"""Files the remote side will not give back, and how pull and verify say so.

The real API answers ``GET /files/{id}/content`` with 400 "Not allowed to download files
of purpose: user_data" for every purpose outside ``syncd.api.DOWNLOADABLE_PURPOSES``
(the one owner of that list). For those files the remote side is a mirror, not a
backup: ``syncd pull`` cannot restore them and ``syncd verify`` can only check what the
listing and the folder show.

Both commands decide from the purpose they know (the ledger row's, or the listing's for
``pull --all``) before asking, never by trying and failing. A server with other rules
(another API, a future change) may still refuse a download the list allows: a 400 to
a download is the same per-file outcome, ``is_refusal``, said in the same summary.

The summary groups files by purpose and says why and what to do, in a few lines,
never one per file (each file is a debug log line, shown with ``-v``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from syncd.api import DOWNLOADABLE_PURPOSES, UPLOAD_PURPOSES
from syncd.errors import RemoteError

# The status of the real API's refusal. A download request carries no parameters, so a
# 400 to one means "this file is not served", whatever the message says.
REFUSAL_STATUS = 400


def is_refusal(exc: RemoteError) -> bool:
    """Whether a download failed because the server does not serve that file's content."""
    return exc.status == REFUSAL_STATUS


def not_allowed_reason(purpose: str | None) -> str:
    """Why a file of ``purpose`` is not downloaded (decided before asking)."""
    return f"the API does not allow downloading files of purpose {purpose}"


@dataclass(frozen=True)
class Undownloadable:
    """One file whose content cannot be read back. ``refusal`` is the server's message
    when it refused a download that the purpose list allows (None: decided beforehand)."""

    path: str
    purpose: str | None
    refusal: str | None = None


def _by_purpose(files: Sequence[Undownloadable]) -> str:
    counts = Counter(f.purpose or "unknown" for f in files)
    return ", ".join(f"{purpose}: {n}" for purpose, n in sorted(counts.items()))


def _plural(count: int, word: str = "file") -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def downloadable_purposes() -> str:
    """``batch and vision`` (the purposes one can upload that download back)."""
    served = [p for p in UPLOAD_PURPOSES if p in DOWNLOADABLE_PURPOSES]
    return " and ".join([", ".join(served[:-1]), served[-1]] if len(served) > 1 else served)


def pull_summary(files: Sequence[Undownloadable]) -> list[str]:
    """The lines ``syncd pull`` closes with when files could not be restored (may be [])."""
    if not files:
        return []
    lines: list[str] = []
    known = [f for f in files if f.refusal is None]
    refused = [f for f in files if f.refusal is not None]
    if known:
        lines.append(
            f"not restored: {_plural(len(known))} ({_by_purpose(known)}): the API does not "
            "allow downloading files of these purposes, so nothing was written for them"
        )
    if refused:
        lines.append(
            f"not restored: {_plural(len(refused))} ({_by_purpose(refused)}): the server "
            f"refused to download them ({refused[0].refusal})"
        )
    lines.append(
        "for these files the remote side is a mirror, not a backup: restore them from "
        f"another copy of the folder; only {downloadable_purposes()} files (and the "
        "platform's outputs) can be pulled back (-v names each file)"
    )
    return lines


def verify_note(files: Sequence[Undownloadable]) -> str:
    """The clause ``syncd verify`` adds to its summary: how many files were checked by
    size only, and why ('' when every file's content was checked)."""
    if not files:
        return ""
    known = [f for f in files if f.refusal is None]
    refused = [f for f in files if f.refusal is not None]
    parts: list[str] = []
    if known:
        purposes = ", ".join(sorted({f.purpose or "unknown" for f in known}))
        parts.append(f"the API does not allow downloading files of purpose {purposes}")
    if refused:
        downloads = _plural(len(refused), "download")
        parts.append(f"the server refused {downloads} ({refused[0].refusal})")
    return (
        f"{_plural(len(files))} checked by size, name, purpose and expiry only, not by "
        f"content: {'; '.join(parts)}"
    )
