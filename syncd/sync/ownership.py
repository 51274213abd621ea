"""Which remote files a request of ours can have made: the pure part of reconciling.

The Files API has no idempotency key and no metadata, so after a lost answer or a crash
syncd proves ownership from what it knows: the name and size it sent, its content where
the purpose can be downloaded, and *when* the request can have been received. Nothing
here does I/O; ``syncd.sync.reconcile`` gathers the facts and acts on the verdict.

**The server's clock.** ``created_at`` is the server's time in whole seconds, not ours.
The offset (server minus this host) is bounded by samples, each an ``Offset`` interval:

- an answer received between local ``t0`` and ``t1`` carrying ``Date: D`` (whole
  seconds, and a server may cache it up to ``STALE_DATE``): ``[D - t1, D + 1 + STALE_DATE - t0]``
  (``date_sample``);
- an upload of ours started at ``s`` and answered at ``e`` with ``created_at = C``:
  ``[C - e, C + 1 - s]`` (``created_sample``).

``estimate`` intersects the largest set of samples that agree; a sample that disagrees
with the others (a clock stepped meanwhile, a bad header) is dropped. With nothing
measured (a server that sends no ``Date`` and never answered an upload) the offset is
only known to be within ``UNMEASURED`` (the old fixed slack): then no part of a window
is sure, and every candidate is kept.

**Windows** (``request_window``). A request can only have produced a file created
between the moment it started and the moment it could last have been received:

- it ended ambiguous (no answer after the whole body left, a 5xx): the moment the
  client gave up;
- a crash left it open: ``SIGN_OF_LIFE_SLACK`` after the process's last sign of life (the
  heartbeat it writes every few seconds while requests are in flight) -- the *sure*
  part; from there up to the request's own time limit after that sign of life, the file
  is only *possibly* ours (a stalled process, a request received late): kept and
  reported, never adopted or deleted.

In server seconds the window is ``[floor(start + low - EPSILON), floor(end + high + EPSILON)]``
for an offset in ``[low, high]``.

**Verdicts** (``judge``), for the attempts of one path and the candidates that could be
theirs (listed files with the name and size sent, that no ledger of this host records).
A request stores at most one file, so the candidates in the attempts' sure windows are
syncd's when each can be the copy of a different attempt; more of them than that (a
replayed request, or another writer) and none is. A candidate another ledger of this
host may have made (one of its uploads whose outcome is open has a window holding it),
one whose content could not be checked where the purpose downloads, and one only in a
window's late part are never syncd's for sure. The newest open attempt adopts the
newest of syncd's copies whose content is surely its own; syncd's other copies are
deleted; every other candidate is kept, with its reason (``Doubt``): ambiguity is never
resolved by deleting. A candidate whose content is known and is no attempt's is not
syncd's at all and is left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

DATE_RESOLUTION = 1.0  # Date and created_at are whole seconds
STALE_DATE = 1.0  # a server may send a Date cached this long (uvicorn: once a second)
EPSILON = 1.0  # slack on both ends of a window (clock reads, a slewed clock)
FALLBACK_SKEW = 120.0  # the offset when nothing was measured (no Date, no upload yet)
SIGN_OF_LIFE_SLACK = 10.0  # a killed process's last request surely arrived by then
DEFAULT_TIME_LIMIT = 600.0  # a request's own limit when the remote states none


@dataclass(frozen=True)
class Offset:
    """The server's clock minus this host's, in seconds: somewhere in ``[low, high]``."""

    low: float
    high: float
    measured: bool = True  # False: nothing was measured, these are the fallback bounds

    @property
    def width(self) -> float:
        return self.high - self.low

    def to_json(self) -> dict[str, float]:
        return {"low": round(self.low, 3), "high": round(self.high, 3)}


UNMEASURED = Offset(-FALLBACK_SKEW, FALLBACK_SKEW, measured=False)


def date_sample(sent: float, received: float, date: int) -> Offset:
    """What an answer with ``Date: date``, sent and received at local ``sent``/``received``,
    says of the offset."""
    return Offset(date - received, date + DATE_RESOLUTION + STALE_DATE - sent)


def created_sample(sent: float, answered: float, created_at: int) -> Offset:
    """What an upload of ours, sent at ``sent`` and answered at ``answered`` with
    ``created_at``, says of the offset."""
    return Offset(created_at - answered, created_at + DATE_RESOLUTION - sent)


def estimate(samples: Sequence[Offset]) -> Offset | None:
    """The intersection of the largest set of ``samples`` that share a point (a tie goes
    to the set holding the latest sample); None without samples."""
    valid = [s for s in samples if s.low <= s.high]
    best: list[int] = []
    for point in sorted({s.low for s in valid}):
        agreeing = [i for i, s in enumerate(valid) if s.low <= point <= s.high]
        if len(agreeing) > len(best) or (
            len(agreeing) == len(best) and agreeing and max(agreeing) > max(best)
        ):
            best = agreeing
    if not best:
        return None
    return Offset(max(valid[i].low for i in best), min(valid[i].high for i in best))


@dataclass(frozen=True)
class Window:
    """The ``created_at`` values (server seconds) a request can have produced: from
    ``low`` to ``sure`` it may be adopted, up to ``high`` it is only possibly ours."""

    low: int
    sure: int
    high: int

    def holds(self, created_at: int) -> bool:
        return self.low <= created_at <= self.high

    def surely(self, created_at: int) -> bool:
        return self.low <= created_at <= self.sure


def request_window(
    started: float,
    offset: Offset,
    *,
    gave_up: float | None = None,
    alive: float | None = None,
    time_limit: float = DEFAULT_TIME_LIMIT,
) -> Window:
    """The window of a request started at local ``started`` (see the module docstring).

    ``gave_up``: when the client gave up on it (it ended ambiguous). Otherwise ``alive``
    is the last sign of life of the process that sent it (None: its start); the request
    surely arrived within ``SIGN_OF_LIFE_SLACK`` of it, possibly within ``time_limit``.
    """
    low = math.floor(started + offset.low - EPSILON)
    if gave_up is not None:
        sure = high = math.floor(max(gave_up, started) + offset.high + EPSILON)
    else:
        last = max(started, alive if alive is not None else started)
        sure = math.floor(last + SIGN_OF_LIFE_SLACK + offset.high + EPSILON)
        high = math.floor(last + max(time_limit, SIGN_OF_LIFE_SLACK) + offset.high + EPSILON)
    if not offset.measured:
        sure = low - 1  # nothing is sure without knowing the server's clock
    return Window(low, sure, high)


# -- verdicts --------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One upload request of ours for a path whose outcome is not known."""

    key: int  # the intent's id
    size: int
    sha256: str | None
    window: Window


@dataclass(frozen=True)
class Candidate:
    """A listed file bearing the path's name that no ledger of this host records."""

    file_id: str
    size: int
    created_at: int
    foreign: bool = False  # an open upload of another ledger of this host may have made it
    sha256: str | None = None  # its content's hash, when it was downloaded


class Doubt(StrEnum):
    """Why a candidate is kept: neither adopted nor deleted."""

    SEVERAL = "more files than uploads of ours could have made"
    OTHER_LEDGER = "another mirror on this host may have uploaded it"
    LATE = "created after its sender's last sign of life (or the server's clock is unknown)"
    UNPROVEN = "its content could not be checked"


@dataclass
class Verdict:
    adopt: str | None = None  # the adopting attempt's copy
    delete: list[str] = field(default_factory=list)  # other copies of ours
    keep: dict[str, Doubt] = field(default_factory=dict)  # file id -> why


def _fits(candidate: Candidate, attempt: Attempt) -> bool:
    """The candidate could be the attempt's copy (its window holds it, size and any known
    content agree)."""
    if candidate.size != attempt.size or not attempt.window.holds(candidate.created_at):
        return False
    known = candidate.sha256 is not None and attempt.sha256 is not None
    return not known or candidate.sha256 == attempt.sha256


def _surely(candidate: Candidate, attempt: Attempt) -> bool:
    return _fits(candidate, attempt) and attempt.window.surely(candidate.created_at)


def one_each(candidates: Sequence[Candidate], attempts: Sequence[Attempt]) -> bool:
    """Whether every candidate can be the copy of a different attempt (each request
    stores at most one file): a matching that covers all candidates."""
    owner: dict[int, str] = {}  # attempt key -> candidate id

    def place(candidate: Candidate, seen: set[int]) -> bool:
        for attempt in attempts:
            if attempt.key in seen or not _surely(candidate, attempt):
                continue
            seen.add(attempt.key)
            taken = owner.get(attempt.key)
            if taken is None or place(by_id[taken], seen):
                owner[attempt.key] = candidate.file_id
                return True
        return False

    by_id = {c.file_id: c for c in candidates}
    return all(place(c, set()) for c in candidates)


def _adoptable(candidate: Candidate, adopter: Attempt, attempts: Sequence[Attempt]) -> bool:
    """Its content is surely the adopter's: checked, or every attempt that could have
    stored it sent the same content."""
    if not _surely(candidate, adopter):
        return False
    if candidate.sha256 is not None:
        return candidate.sha256 == adopter.sha256
    return adopter.sha256 is not None and all(
        other.sha256 == adopter.sha256 for other in attempts if _surely(candidate, other)
    )


def judge(
    attempts: Sequence[Attempt],
    candidates: Sequence[Candidate],
    *,
    adopter: int | None = None,
    proof: bool = False,
) -> Verdict:
    """The verdict on ``candidates`` for the ``attempts`` of one path.

    Candidates in no attempt's window (or of none's content) are not syncd's and are
    left out. Those only in the late part of a window are kept (``LATE``). The others
    are syncd's copies when each can be the copy of a different attempt (``one_each``;
    more of them than that means a replay or another writer: all kept, ``SEVERAL``) --
    except one another ledger of this host may have made (``OTHER_LEDGER``) or, for a
    purpose that downloads (``proof``), whose SHA-256 was not checked (``UNPROVEN``),
    which are kept. Of syncd's copies, the ``adopter`` (the key of the newest open
    attempt; None in the late-copy sweep) adopts the newest whose content is surely
    its own; the rest are deleted.
    """
    relevant = [c for c in candidates if any(_fits(c, a) for a in attempts)]
    sure = [c for c in relevant if any(_surely(c, a) for a in attempts)]
    verdict = Verdict()
    for candidate in relevant:
        if candidate not in sure:
            verdict.keep[candidate.file_id] = Doubt.LATE
    if not one_each(sure, attempts):
        for candidate in sure:
            verdict.keep[candidate.file_id] = (
                Doubt.OTHER_LEDGER if candidate.foreign else Doubt.SEVERAL
            )
        return verdict
    ours: list[Candidate] = []
    for candidate in sure:
        if candidate.foreign:
            verdict.keep[candidate.file_id] = Doubt.OTHER_LEDGER
        elif proof and candidate.sha256 is None:
            verdict.keep[candidate.file_id] = Doubt.UNPROVEN
        else:
            ours.append(candidate)
    chosen = [a for a in attempts if a.key == adopter]
    if chosen:
        adoptable = [c for c in ours if _adoptable(c, chosen[0], attempts)]
        if adoptable:
            verdict.adopt = max(adoptable, key=lambda c: (c.created_at, c.file_id)).file_id
    verdict.delete = [c.file_id for c in ours if c.file_id != verdict.adopt]
    return verdict
