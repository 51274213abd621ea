"""What tests share, shipped with the package as structlog ships ``structlog.testing``.

- :func:`crash_hook` / :func:`crash_hook_from_env`: ``SYNCD_CRASH_AT=STEP[:N]`` kills the
  process with SIGKILL the Nth time the engine reaches ``STEP`` (``syncd.sync.steps``),
  exactly as ``kill -9`` or a power cut would. ``syncd sync`` and ``syncd run`` install
  it when the variable is set (only tests set it).
- :class:`FakeClock`: a clock a test moves by hand.
- :class:`MemoryRemote`: a ``FilesRemote`` that keeps files in memory (no HTTP), for
  unit tests of the parts above the remote (reconcile, engine rules). Behaviour tests
  use a real ``syncd serve`` instead.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from syncd.api import DOWNLOADABLE_PURPOSES, RemoteFile
from syncd.errors import ConfigError, NotFoundError, PermanentError, RetryableError
from syncd.sync.steps import STEPS, StepHook


def crash_hook(spec: str) -> StepHook:
    """A hook that SIGKILLs this process the Nth time ``STEP`` is reached (``STEP[:N]``)."""
    step, _, count = spec.partition(":")
    if step not in STEPS:
        raise ConfigError(f"SYNCD_CRASH_AT: unknown step {step!r} (steps: {', '.join(STEPS)})")
    if count and (not count.isdigit() or int(count) < 1):
        raise ConfigError(f"SYNCD_CRASH_AT: {count!r} is not a positive count")
    remaining = [int(count or 1)]
    lock = threading.Lock()

    def hook(reached: str, path: str) -> None:
        if reached != step:
            return
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def crash_hook_from_env(env: Mapping[str, str]) -> StepHook | None:
    """The crash hook ``SYNCD_CRASH_AT`` asks for, or None when it is unset."""
    spec = env.get("SYNCD_CRASH_AT", "").strip()
    return crash_hook(spec) if spec else None


class FakeClock:
    """A clock that stands still until moved: ``clock()`` reads it, ``advance(s)`` moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryRemote:
    """An in-memory ``FilesRemote``: every upload is stored, listings are newest first.

    ``created_at`` comes from ``clock`` (unix seconds). ``deleted`` records every delete
    call in order. ``add`` puts a file there as another client would. Like the real API,
    ``download`` refuses files whose purpose is not in ``DOWNLOADABLE_PURPOSES`` (400),
    unless ``allow_all_downloads``.
    """

    def __init__(
        self, clock: FakeClock | None = None, *, allow_all_downloads: bool = False
    ) -> None:
        self.clock = clock or FakeClock(1_700_000_000.0)
        self.allow_all_downloads = allow_all_downloads
        self.files: dict[str, RemoteFile] = {}
        self.contents: dict[str, bytes] = {}
        self.deleted: list[str] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(
        self,
        filename: str,
        size: int,
        created: float,
        purpose: str = "user_data",
        content: bytes | None = None,
    ) -> str:
        """Store a file as someone else would; returns its id."""
        with self._lock:
            file_id = f"file-{next(self._ids)}"
            self.files[file_id] = RemoteFile(file_id, filename, size, int(created), purpose)
            self.contents[file_id] = content if content is not None else b"\0" * size
            return file_id

    def upload(
        self,
        path: Path,
        filename: str,
        purpose: str,
        expires_after_seconds: int | None = None,
        *,
        size: int | None = None,
    ) -> RemoteFile:
        content = path.read_bytes()
        if size is not None and len(content) != size:
            raise RetryableError(f"upload of {filename}: the file changed while it was sent")
        file_id = self.add(filename, len(content), self.clock(), purpose, content)
        return self.files[file_id]

    def list_files(self, purpose: str | None = None, order: str = "desc") -> Iterator[RemoteFile]:
        with self._lock:
            chosen = [f for f in self.files.values() if purpose in (None, f.purpose)]
        yield from sorted(chosen, key=lambda f: (f.created_at, f.id), reverse=order == "desc")

    def retrieve(self, file_id: str) -> RemoteFile:
        with self._lock:
            if file_id not in self.files:
                raise NotFoundError(f"No such File object: {file_id}", status=404)
            return self.files[file_id]

    def download(self, file_id: str, out: BinaryIO, expected_bytes: int | None = None) -> int:
        purpose = self.retrieve(file_id).purpose
        if not self.allow_all_downloads and purpose not in DOWNLOADABLE_PURPOSES:
            raise PermanentError(
                f"download {file_id}: Not allowed to download files of purpose: {purpose}",
                status=400,
            )
        return out.write(self.contents[file_id])

    def delete(self, file_id: str) -> None:
        with self._lock:
            self.deleted.append(file_id)
            self.files.pop(file_id, None)
            self.contents.pop(file_id, None)

    def close(self) -> None:
        pass
