"""Every error syncd raises on purpose, in one tree, each carrying its verdict.

::

    SyncdError                      anything syncd reports as a one-line message
    ├── ConfigError                 a bad config key, option or environment value (exit 2)
    ├── LedgerLockedError           another process holds the folder's ledger
    ├── StoreLockedError            another `syncd serve` uses this store directory
    ├── FolderUnavailableError      the mirrored folder is missing or not a directory
    ├── LocalFileError              a local file cannot be read as it is (per file)
    │   ├── FileChangedError        it changed while it was read or sent: no hash or
    │   │                           upload describes one version of it; try again later
    │   └── NotRegularFileError     it is no longer a regular file (also an OSError)
    ├── RestoreError                a file cannot be put back in the destination
    │   ├── UnsafePathError         a path below the destination must not be written
    │   ├── PullCancelledError      the pull stopped while this file streamed
    │   └── ContentMismatchError    the downloaded bytes are not what the ledger recorded
    └── RemoteError                 a Files API call failed; .status, .message, .retry_after
        ├── RetryableError          RETRYABLE: connect/read errors, timeouts, 408, 409,
        │   │                       429, 5xx; certainly not carried out, try again
        │   └── RateLimitedError    429; .retry_after pauses *every* worker (RetryGate)
        ├── AmbiguousError          AMBIGUOUS: the request may have taken effect but the
        │                           answer was lost (upload sent, then timeout/reset/5xx);
        │                           never retried blindly: reconcile first
        ├── PermanentError          PERMANENT: this request will not succeed as it is
        │   │                       (other 4xx); per file, not retried until it changes
        │   ├── NotFoundError       NOT_FOUND: 404; deleting a missing file is success
        │   │   └── VectorStoreGoneError   the vector store itself does not exist
        │   └── UploadGoneError     an Uploads API upload is no longer pending: start anew
        └── FatalError              FATAL: 401/403, the key is wrong or lacks rights: stop
                                    uploading and say so

The verdict of a status is decided here, once (``classify_status``), before anything
retries; tenacity only ever retries errors whose verdict is ``RETRYABLE``.
"""

from __future__ import annotations

from enum import Enum


class SyncdError(Exception):
    """An error syncd reports to the user as one line; never a traceback."""


class ConfigError(SyncdError):
    """A bad config key, command-line option or environment value."""


class LedgerLockedError(SyncdError):
    """Another process already holds the ledger of this folder."""


class StoreLockedError(SyncdError):
    """Another server already uses this data directory."""


class FolderUnavailableError(SyncdError):
    """The mirrored folder is missing or not a directory (unmounted, renamed, a typo)."""


class LocalFileError(SyncdError):
    """A local file cannot be read as it is; a per-file problem, never the pass's."""


class FileChangedError(LocalFileError):
    """The file changed while it was read (hashed, checked or sent): what was read
    describes no single version of it."""


class NotRegularFileError(LocalFileError, OSError):
    """The path is (no longer) a regular file. Also an ``OSError``: "cannot read it"."""


class RestoreError(SyncdError):
    """A file that cannot be put back into the destination as asked."""


class UnsafePathError(RestoreError):
    """A path below the destination that must not be written (a link, not a folder)."""


class PullCancelledError(RestoreError):
    """The transfer was stopped (interrupt, disk full, bad key) while this file streamed."""


class ContentMismatchError(RestoreError):
    """The downloaded bytes are not what the ledger recorded."""


class Verdict(Enum):
    RETRYABLE = "retryable"
    AMBIGUOUS = "ambiguous"
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


class AmbiguousError(RemoteError):
    """The request may have been carried out although no answer arrived."""

    verdict = Verdict.AMBIGUOUS


class PermanentError(RemoteError):
    verdict = Verdict.PERMANENT


class NotFoundError(PermanentError):
    verdict = Verdict.NOT_FOUND


class VectorStoreGoneError(NotFoundError):
    """The vector store does not exist (a wrong id, or it was deleted)."""


class UploadGoneError(PermanentError):
    """The upload is no longer pending on the server (expired, cancelled, unknown)."""


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
