"""The narrow interface syncd needs from a Files API, and its contract.

Everything above this module (planner, executor, daemon, restore) talks to a
``FilesRemote`` and nothing else; only ``syncd.remote.files_http`` knows about httpx.

Contract for every implementation:

- Methods raise ``syncd.errors.RemoteError`` subclasses for anything the remote side
  did; the subclass is the retry verdict (see ``syncd/errors.py``). ``upload`` may also
  raise ``OSError`` when the local file cannot be read: that is a local, per-file error.
- ``upload`` streams the file from disk (memory does not grow with its size). Given
  ``size`` (the byte count the caller recorded in its intent), it sends exactly that
  many bytes: a file that turns out shorter or longer is never sent whole (the body is
  cut before its end, ``RetryableError``), so whatever the server stores has the size
  the intent says -- which is what reconciling a lost answer matches on. It sends
  ``filename`` as given: the path relative to the mirrored folder with ``/`` separators.
  If the request may have reached the server but no answer came back it raises
  ``AmbiguousError`` instead of retrying, because the API has no idempotency key: a
  blind retry could store a second copy. The caller reconciles (list + match).
- ``list_files`` yields every file, following ``after`` until ``has_more`` is false.
  If it raises (``ProtocolError`` for a page that is not a valid listing or for paging
  without end), what it yielded before is not a listing: the caller drops it and goes
  on as if it had none (the engine stops the pass before acting), never as if the
  files it did not get were gone.
- Every file a method returns passed ``RemoteFile.from_json``: its id is one safe path
  segment, its numbers are integers in range. A method given an id that is not one
  (an old ledger's) raises ``PermanentError`` without sending anything.
- A 404 from the collection itself (``GET`` or ``POST /files``) is ``WrongEndpointError``
  (the base URL is wrong), never a per-file ``NotFoundError``.
- ``delete`` of a file that is already gone returns normally (deleting is idempotent).
- ``download`` streams the content into ``out`` and raises ``RemoteError`` if the
  byte count differs from the file's ``bytes``; given ``expected_bytes`` (the caller
  knows the size, e.g. from a listing or the ledger) it checks against that and skips
  the ``retrieve`` call it would otherwise make to learn the size.

Large files (the Uploads API). A remote that can also take files in parts implements
``SupportsUploadsApi``: ``uploads_api()`` returns an ``UploadsApi`` (create an upload,
add parts, complete, cancel). ``syncd.sync.multipart`` drives it. Its contract:

- ``create_upload`` and ``add_part`` may be retried freely: a lost answer leaves at
  worst an orphan upload or part, which the server drops (expiry, or parts not named in
  ``complete``). Neither creates a File.
- ``complete_upload`` creates the File, so it follows ``upload``'s rule: a lost answer
  is ``AmbiguousError`` (reconcile by listing; there is no GET /uploads/{id}).
- ``add_part`` and ``complete_upload`` raise ``UploadGoneError`` when the server no
  longer has the upload pending (expired, cancelled, unknown): start a new one.
- ``cancel_upload`` of an upload that is already finished or gone returns normally.

The server's clock (optional). A remote that implements ``SupportsServerClock`` reports
what its answers said of the server's clock -- ``date_samples()``: the last few
``(sent, received, date)`` triples, local unix times around an answer and the whole
seconds of its ``Date`` header -- and ``request_time_limit()``, how long a request may
run, for a body of a given size, before the client gives up (``syncd.sync.server_clock``
and the ownership windows use both).

Pacing and stopping (``SupportsPacing``, ``SupportsStop``; the HTTP remote has both,
``syncd.remote.pacing``). A remote may hold requests back to stay under the server's
rate limit; ``pacing_status()`` says, per route, at what rate and since when, for the
daemon's ``STATUS=`` and the ledger. ``interrupt_waits()`` makes every request that is
waiting (for its pacing slot, a rate-limit pause or a retry's backoff), and every one
that would wait from then on, raise ``StoppedError`` at once; nothing of it was sent.
Requests that need no wait still go. ``resume_waits()`` ends that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from syncd.api import RemoteFile, RemoteUpload


class FilesRemote(Protocol):
    """What syncd needs from a Files API. See the module docstring for the contract."""

    def upload(
        self,
        path: Path,
        filename: str,
        purpose: str,
        expires_after_seconds: int | None = None,
        *,
        size: int | None = None,
    ) -> RemoteFile: ...

    def list_files(
        self, purpose: str | None = None, order: str = "desc"
    ) -> Iterator[RemoteFile]: ...

    def retrieve(self, file_id: str) -> RemoteFile: ...

    def download(self, file_id: str, out: BinaryIO, expected_bytes: int | None = None) -> int: ...

    def delete(self, file_id: str) -> None: ...

    def close(self) -> None: ...


class UploadsApi(Protocol):
    """The four Uploads API calls; see the module docstring for the contract."""

    def create_upload(
        self,
        filename: str,
        purpose: str,
        size: int,
        *,
        mime_type: str,
        expires_after_seconds: int | None = None,
    ) -> RemoteUpload: ...

    def add_part(
        self,
        upload_id: str,
        path: Path,
        offset: int,
        length: int,
        on_sending: Callable[[], None] | None = None,
    ) -> str:
        """``on_sending``, if given, is called once the request is on its way (its
        headers sent), possibly again on a retry."""
        ...

    def complete_upload(
        self, upload_id: str, part_ids: list[str], md5: str | None
    ) -> RemoteFile: ...

    def cancel_upload(self, upload_id: str) -> None: ...


@runtime_checkable
class SupportsUploadsApi(Protocol):
    """A remote that can also send large files through the Uploads API."""

    def uploads_api(self) -> UploadsApi: ...


@runtime_checkable
class SupportsServerClock(Protocol):
    """A remote that reports its answers' ``Date`` and its requests' time limit."""

    def date_samples(self) -> list[tuple[float, float, int]]: ...

    def request_time_limit(self, size: int) -> float: ...


# The routes' names for people: "uploads paced at 600/min".
ROUTE_LABELS = {
    "create": "uploads",
    "list": "listings",
    "retrieve": "file lookups",
    "content": "downloads",
    "delete": "deletes",
    "upload_create": "large-file uploads",
    "upload_part": "upload parts",
    "upload_complete": "upload completions",
    "upload_cancel": "upload cancels",
}


def _per_minute(rate: float) -> str:
    per_minute = rate * 60.0
    return f"{per_minute:,.0f}/min" if per_minute >= 10 else f"{per_minute:.2g}/min"


@dataclass(frozen=True)
class PacingStatus:
    """How one route's requests are paced (``SupportsPacing``); counters since the remote
    was opened. ``rate`` is requests per second (None: not paced); ``source`` says where
    it comes from (``configured``, ``default for api.openai.com``, ``server limit``,
    ``after 429s``); ``paced_since`` (unix time) starts the current stretch of requests
    that had to wait, None when none waited lately."""

    route: str
    rate: float | None
    source: str | None
    waiting: int = 0
    paced_since: float | None = None
    delayed_requests: int = 0
    delayed_seconds: float = 0.0
    rate_limited: int = 0
    requests: int = 0

    @property
    def paced(self) -> bool:
        """Requests are being held back now (or were a moment ago)."""
        return self.paced_since is not None

    def describe(self) -> str:
        """``uploads paced at 600/min (server limit)``."""
        label = ROUTE_LABELS.get(self.route, self.route)
        if self.rate is None:
            return f"{label} held back by the server's rate limit"
        return f"{label} paced at {_per_minute(self.rate)} ({self.source})"

    def minus(self, earlier: PacingStatus | None) -> PacingStatus:
        """This status with the counters of ``earlier`` taken off (one pass's share)."""
        if earlier is None:
            return self
        return PacingStatus(
            self.route,
            self.rate,
            self.source,
            self.waiting,
            self.paced_since,
            self.delayed_requests - earlier.delayed_requests,
            round(self.delayed_seconds - earlier.delayed_seconds, 3),
            self.rate_limited - earlier.rate_limited,
            self.requests - earlier.requests,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "per_minute": None if self.rate is None else round(self.rate * 60.0, 2),
            "source": self.source,
            "waiting": self.waiting,
            "paced_since": self.paced_since,
            "delayed_requests": self.delayed_requests,
            "delayed_seconds": round(self.delayed_seconds, 3),
            "rate_limited": self.rate_limited,
            "requests": self.requests,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PacingStatus:
        per_minute = data.get("per_minute")
        return cls(
            route=str(data.get("route", "")),
            rate=None if per_minute is None else float(per_minute) / 60.0,
            source=data.get("source"),
            waiting=int(data.get("waiting") or 0),
            paced_since=data.get("paced_since"),
            delayed_requests=int(data.get("delayed_requests") or 0),
            delayed_seconds=float(data.get("delayed_seconds") or 0.0),
            rate_limited=int(data.get("rate_limited") or 0),
            requests=int(data.get("requests") or 0),
        )


@runtime_checkable
class SupportsPacing(Protocol):
    """A remote that paces its requests (see the module docstring)."""

    def pacing_status(self) -> tuple[PacingStatus, ...]: ...


@runtime_checkable
class SupportsStop(Protocol):
    """A remote whose waits a stop can cut short (see the module docstring)."""

    def interrupt_waits(self) -> None: ...

    def resume_waits(self) -> None: ...


def stamp(unix: float | None) -> str:
    """A unix time as local ``HH:MM:SS`` (for status lines)."""
    return "?" if unix is None else time.strftime("%H:%M:%S", time.localtime(unix))
