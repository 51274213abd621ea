"""Crash points: a test hook that kills syncd with SIGKILL at one durable step.

The engine calls ``hook(step, path)`` right after each step that changes the ledger or
the remote side (``STEPS``). With ``SYNCD_CRASH_AT=STEP`` (or ``STEP:N`` for the Nth
time the step is reached) the process kills itself there, exactly as ``kill -9`` or a
power cut would, so tests can show that the next start converges: no duplicate, no
orphan, nothing lost. Unset (always, outside tests), the hook does nothing.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Mapping

from syncd.errors import ConfigError

StepHook = Callable[[str, str], None]

STEPS = (
    "upload.intent",  # the upload intent is committed; the request is not sent yet
    "upload.sent",  # the server stored the file; the outcome is not committed yet
    "upload.committed",  # the new row (and a replace's delete intent) are committed
    "replace.old_deleted",  # the old version is deleted; its intent is still open
    "delete.intent",  # the delete intent is committed; the request is not sent yet
    "delete.sent",  # the remote file is deleted; the intent is still open
    "multipart.created",  # an Uploads API upload is made and remembered; no part sent
    "multipart.part_sent",  # one more part is confirmed and recorded (STEP:N: the Nth)
)


def no_step(step: str, path: str) -> None:
    """The hook outside tests: nothing happens."""


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
    spec = env.get("SYNCD_CRASH_AT", "").strip()
    return crash_hook(spec) if spec else None
