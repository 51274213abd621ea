"""Every error syncd raises on purpose, in one tree, each carrying its retry verdict.

::

    SyncdError                      anything syncd reports as a one-line message
    ├── ConfigError                 a bad config key, option or environment value (exit 2)
    ├── LedgerLockedError           another process holds the folder's ledger
    └── RemoteError                 a Files API call failed; .status, .message, .retry_after
        ├── RetryableError          worth trying again: connect/read errors, timeouts,
        │   │                       408, 409, 429, 5xx
        │   ├── RateLimitedError    429; .retry_after pauses *every* worker (see RetryGate)
        │   └── AmbiguousError      the request may have taken effect but the answer was
        │                           lost (upload sent, then timeout/reset/5xx): the
        │                           executor must reconcile before trying again
        ├── PermanentError          this request will not succeed as it is (other 4xx);
        │   │                       a per-file error, not retried until the file changes
        │   └── NotFoundError       404; deleting a missing file counts as success
        └── FatalError              401/403: the key is wrong or lacks rights; stop
                                    uploading and say so

The verdict is decided here, once, from the status code (``classify_status``) before
anything retries; tenacity only ever retries ``RetryableError``.
"""

from __future__ import annotations

from enum import Enum


class SyncdError(Exception):
    """An error syncd reports to the user as one line; never a traceback."""


class ConfigError(SyncdError):
    """A bad config key, command-line option or environment value."""


class LedgerLockedError(SyncdError):
    """Another process already holds the ledger of this folder."""


class Verdict(Enum):
    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    NOT_FOUND = "not_found"
    FATAL = "fatal"


class RemoteError(SyncdError):
    """A Files API call failed. ``status`` is None for transport errors."""

    verdict = Verdict.PERMANENT

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.code = code

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"HTTP {self.status}: {self.message}"


class RetryableError(RemoteError):
    verdict = Verdict.RETRYABLE


class RateLimitedError(RetryableError):
    pass


class AmbiguousError(RetryableError):
    """The request may have been carried out although no answer arrived."""


class PermanentError(RemoteError):
    verdict = Verdict.PERMANENT


class NotFoundError(PermanentError):
    verdict = Verdict.NOT_FOUND


class FatalError(RemoteError):
    verdict = Verdict.FATAL


def classify_status(status: int) -> Verdict:
    """The retry verdict for an HTTP error status (the Files API's and the SDK's rules)."""
    if status in (401, 403):
        return Verdict.FATAL
    if status == 404:
        return Verdict.NOT_FOUND
    if status in (408, 409, 429) or status >= 500:
        return Verdict.RETRYABLE
    return Verdict.PERMANENT


def error_for_status(
    status: int,
    message: str,
    *,
    retry_after: float | None = None,
    code: str | None = None,
) -> RemoteError:
    """Build the most specific RemoteError for an HTTP error answer."""
    verdict = classify_status(status)
    cls: type[RemoteError]
    if status == 429:
        cls = RateLimitedError
    elif verdict is Verdict.RETRYABLE:
        cls = RetryableError
    elif verdict is Verdict.FATAL:
        cls = FatalError
    elif verdict is Verdict.NOT_FOUND:
        cls = NotFoundError
    else:
        cls = PermanentError
    return cls(message, status=status, retry_after=retry_after, code=code)
