"""Every error syncd raises on purpose, in one tree, each carrying its verdict.

::

    SyncdError                      anything syncd reports as a one-line message
    ├── ConfigError                 a bad config key, option or environment value (exit 2)
    │   └── RemoteChangedError      the ledger mirrors to another remote than this run's
    ├── LedgerLockedError           another process holds the folder's ledger
    ├── StoreLockedError            another `syncd serve` uses this store directory
    ├── NothingRefusedError         `approve-deletes`: the ledger holds no refused delete
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
        │   ├── RateLimitedError    429; .retry_after pauses *every* worker (RetryGate)
        │   └── ProtocolError       the answer is not what the API promises (malformed,
        │                           too big, too slow, pages without end): retried like a
        │                           5xx; a bad listing is no listing, so never a delete
        ├── StoppedError            STOPPED: a stop (Ctrl-C, SIGTERM) ended a wait for the
        │                           request budget, a pause or a backoff: nothing was sent
        ├── AmbiguousError          AMBIGUOUS: the request may have taken effect but the
        │                           answer was lost (upload sent, then timeout/reset/5xx);
        │                           never retried blindly: reconcile first
        ├── PermanentError          PERMANENT: this request will not succeed as it is
        │   │                       (other 4xx); per file, not retried until it changes
        │   ├── NotFoundError       NOT_FOUND: 404; deleting a missing file is success
        │   │   └── VectorStoreGoneError   the vector store itself does not exist
        │   └── UploadGoneError     an Uploads API upload is no longer pending: start anew
        └── FatalError              FATAL: nothing more in this pass can work: stop it,
            │                       record nothing per file, say so once. Itself: 401/403,
            │                       the key is wrong or lacks rights (.cause "key")
            ├── WrongEndpointError  the base URL leads to no Files API: GET or POST /files
            │                       answered 404, or the listing failed for good (.cause
            │                       "endpoint"; `sync` exits 2)
            └── UnreachableError    a full pass cannot list the remote files even after
                                    retrying: the server is down (.cause "unreachable")

Three more are signals between two parts of syncd, always caught by the caller and
never shown as they are: ``LockHeldError`` (a lock file is held; the ledger and the
server's store turn it into their ``*LockedError``), ``RefusedName`` (a ValueError: a
path that cannot be made safe; restore reports it per file) and ``StoreGone`` (the
vector store vanished during a step; the step settles its rows). The server's own
errors (``syncd.server.envelope.ApiError`` and the upload store's ``UploadClosedError``)
are answers of the API it serves, in its envelope, and live with the server.

The verdict of a status is decided here, once (``classify_status``), before anything
retries; tenacity only ever retries errors whose verdict is ``RETRYABLE``. A
``FatalError``'s ``cause`` says what a daemon waits for before it tries again: a new key
(``"key"``), or a remote that answers (``"endpoint"``, ``"unreachable"``: retried with
a backoff).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path


class SyncdError(Exception):
    """An error syncd reports to the user as one line; never a traceback."""


class ConfigError(SyncdError):
    """A bad config key, command-line option or environment value."""


class RemoteChangedError(ConfigError):
    """The ledger mirrors to another remote than the one this run talks to."""


class NothingRefusedError(SyncdError):
    """``approve-deletes`` for a folder whose ledger holds no refusal to approve."""


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
    STOPPED = "stopped"
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


class ProtocolError(RetryableError):
    """The server answered, but not with what the API promises: a body that is not the
    expected JSON, a field of the wrong type, an unsafe id, an answer over its size cap or
    past its deadline, a listing that pages without end. Retried like a 5xx; a listing
    that fails so is no listing at all (never a partial one), so nothing is deleted or
    taken for gone because of it. For a request that creates a File, a 2xx answer that
    is not a valid File is ``AmbiguousError`` instead (it may have been stored)."""


class StoppedError(RemoteError):
    """The caller asked to stop while this request waited to be sent (its pacing slot,
    a rate-limit pause, a retry's backoff): nothing was sent. Never retried; the action
    is simply not run."""

    verdict = Verdict.STOPPED


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
    """The pass cannot go on (401/403 here: the key is refused)."""

    verdict = Verdict.FATAL
    cause = "key"


class WrongEndpointError(FatalError):
    """The base URL does not lead to a Files API (404 from the collection endpoint)."""

    cause = "endpoint"


class UnreachableError(FatalError):
    """The remote could not be listed even after retrying (down, or failing with 5xx)."""

    cause = "unreachable"


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


# -- signals between parts of syncd (module docstring) ---------------------------------


class LockHeldError(Exception):
    """Another process holds the lock; ``holder`` is what it wrote there ("pid N: ...")."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by {holder or 'another process'}")
        self.path = path
        self.holder = holder


class RefusedName(ValueError):
    """A name that cannot be made into a safe path; ``str()`` says why."""


class StoreGone(Exception):
    """The vector store vanished during a step (a 404 from the store itself)."""
