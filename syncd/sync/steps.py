"""The durable steps of a transfer, and the hook called after each of them.

The engine (and the multipart uploader) calls ``hook(step, path)`` right after each
step that changes the ledger or the remote side (``STEPS``). Outside tests the hook
does nothing (``no_step``); ``syncd.testing.crash_hook`` kills the process at one of
them, so tests can show that the next start converges.
"""

from __future__ import annotations

from collections.abc import Callable

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
    "vector.store_intent",  # the intent to create a vector store is committed; not sent
    "vector.attach_intent",  # attach intents (one file or a batch) committed; not sent
    "vector.attached",  # the store took the file(s); the outcome is not recorded yet
    "vector.detach_intent",  # a detach intent is committed; the request is not sent yet
    "vector.detached",  # the store let the file go; the row is not updated yet
)


def no_step(step: str, path: str) -> None:
    """The hook outside tests: nothing happens."""
