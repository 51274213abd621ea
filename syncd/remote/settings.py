"""How to reach a Files API: base URL, key and headers, read from the environment.

This is the only place that reads remote settings from the environment; everything
below it (``HttpFilesRemote``) takes a ``RemoteSettings`` and never looks at ``os.environ``.

Where each value comes from (first match wins):

- base URL: ``--base-url`` (the ``base_url`` argument), ``OPENAI_BASE_URL``,
  ``https://api.openai.com/v1``.
- API key, sent as ``Authorization: Bearer``: ``OPENAI_API_KEY``; the file named by
  ``OPENAI_API_KEY_FILE``; ``$CREDENTIALS_DIRECTORY/openai_api_key`` (systemd
  ``LoadCredential=openai_api_key:/path``). Failing those, an Azure OpenAI key, sent as
  the ``api-key`` header: ``AZURE_OPENAI_API_KEY``, then
  ``$CREDENTIALS_DIRECTORY/azure_openai_api_key``. A key is never read from argv.
- ``OPENAI_ORG_ID`` -> ``OpenAI-Organization``; ``OPENAI_PROJECT_ID`` -> ``OpenAI-Project``.
- ``OPENAI_API_VERSION`` or ``AZURE_OPENAI_API_VERSION`` -> the ``api-version`` query
  parameter on every request (classic Azure OpenAI requires it).
- ``SYNCD_ANSWER_DEADLINE`` (seconds) lowers the deadline of a listing page or a JSON
  answer (``syncd.remote.bounds``; tests use it to cut a trickling server off quickly).

The key is checked before anything is sent (``check_api_key``): one line of printable
ASCII without inner whitespace, at most ``MAX_KEY_CHARS``. Anything else is a
``ConfigError`` that names where the key came from and what is wrong, never the key: a
key file with a second line, or a key with a space or a control character in it, would
otherwise reach the HTTP library, whose error message quotes the header it refuses. A
key file is read only if it is a regular file (a FIFO would block), at most 64 KiB;
one that cannot be read (permission denied, a directory) is a ``ConfigError`` naming it.

A base URL that carries credentials (``http://user:pw@host/v1``) is refused: the Files
API authenticates with the key, which goes in the ``Authorization`` header, and httpx
would turn the URL's user and password into a second ``Authorization`` of its own;
worse, a URL is shown in messages (``cannot connect to ...``) and, given as
``--base-url``, is visible to every user in ``ps``. Refusing says so at once; the
message shows the URL with its credentials masked.

The key is kept out of ``repr()``/``str()`` so that it cannot leak through a log line or
a traceback that prints the settings.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from syncd.errors import ConfigError
from syncd.remote.pacing import PacingConfig

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_KEY_CHARS = 4096  # OpenAI's keys are ~170 characters, Azure's 32 or 84
MAX_KEY_FILE_BYTES = 64 * 1024
DEFAULT_ANSWER_DEADLINE = 120.0  # a listing page or a JSON answer, the whole request
MIN_TRANSFER_RATE = 100_000.0  # bytes/s; a transfer slower than this is stuck
CREDENTIAL_NAME = "openai_api_key"
AZURE_CREDENTIAL_NAME = "azure_openai_api_key"

AuthHeader = Literal["bearer", "api-key"]

MISSING_KEY_MESSAGE = (
    "no API key: set OPENAI_API_KEY, or set OPENAI_API_KEY_FILE to a file that holds the "
    f"key, or pass it as the systemd credential {CREDENTIAL_NAME!r} "
    f"(LoadCredential={CREDENTIAL_NAME}:/path/to/key); for Azure OpenAI set "
    "AZURE_OPENAI_API_KEY. Keys are never accepted on the command line. "
    "To try syncd without an account, use --local."
)


@dataclass(frozen=True)
class RemoteSettings:
    """Everything ``HttpFilesRemote`` needs to talk to one Files API server.

    ``timeout`` bounds each read/write of a request (the official SDK's 600 s, because a
    large upload may take the server a while to answer); ``connect_timeout`` bounds
    opening a connection. Each request as a whole also has a deadline
    (``syncd.remote.bounds``): ``answer_deadline`` for a listing page or a JSON answer,
    and for transfers a time that grows with their size at ``min_transfer_rate``.
    ``max_attempts`` is per call, first try included;
    ``max_retry_after`` is the longest Retry-After honoured by waiting inside a call
    (longer ones make the call fail at once with ``RateLimitedError`` so the caller
    defers the file; see ``syncd.remote.retry``). ``pacing`` is how requests are paced
    under the server's rate limit (``syncd.remote.pacing.pacing_for``).
    """

    base_url: str
    api_key: str = field(repr=False)
    organization: str | None = None
    project: str | None = None
    azure_api_version: str | None = None
    auth_header: AuthHeader = "bearer"
    timeout: float = 600.0
    connect_timeout: float = 5.0
    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    max_retry_after: float = 120.0
    answer_deadline: float = DEFAULT_ANSWER_DEADLINE
    min_transfer_rate: float = MIN_TRANSFER_RATE

    def __post_init__(self) -> None:
        if self.api_key:
            check_api_key(self.api_key, "the API key")
        check_base_url(self.base_url, "the base URL")

    def download_deadline(self, size: int) -> float:
        """Seconds a download of ``size`` bytes may take, answer and body."""
        return self.answer_deadline + size / self.min_transfer_rate

    def upload_deadline(self, size: int) -> float:
        """Seconds a request sending ``size`` bytes may take: the body at the slowest
        rate syncd accepts, then ``timeout`` for the server to answer."""
        return self.timeout + size / self.min_transfer_rate

    pacing: PacingConfig = field(default_factory=PacingConfig)

    def headers(self) -> dict[str, str]:
        """The headers sent with every request, the key included (never log these)."""
        result: dict[str, str] = {}
        if self.api_key:
            if self.auth_header == "api-key":
                result["api-key"] = self.api_key
            else:
                result["Authorization"] = f"Bearer {self.api_key}"
        if self.organization:
            result["OpenAI-Organization"] = self.organization
        if self.project:
            result["OpenAI-Project"] = self.project
        return result

    def query_params(self) -> dict[str, str]:
        """Query parameters sent with every request (Azure's ``api-version``)."""
        return {"api-version": self.azure_api_version} if self.azure_api_version else {}

    def replace(self, **changes: object) -> RemoteSettings:
        """A copy with some fields changed (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _nonempty(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def check_api_key(key: str, source: str) -> str:
    """``key`` if it can be sent as it is, else ``ConfigError`` saying what is wrong with
    the key from ``source`` (which names it: a variable or a file), never the key."""
    problem = None
    if "\n" in key or "\r" in key:
        problem = f"it has {len(key.splitlines())} lines; the key must be one line"
    elif any(c in key for c in " \t\v\f"):
        problem = "it holds a space or tab; a key has no whitespace inside"
    elif not key.isascii() or not key.isprintable():
        problem = "it holds a control or non-ASCII character; a key is printable ASCII"
    elif len(key) > MAX_KEY_CHARS:
        problem = f"it is {len(key)} characters long; no key is longer than {MAX_KEY_CHARS}"
    if problem:
        raise ConfigError(f"{source} is not usable as an API key: {problem} (not shown)")
    return key


def _read_key_file(path: Path, source: str) -> str:
    """The key held in ``path``, stripped of surrounding whitespace; ConfigError if the
    file cannot be read, is not a regular file, is too big, or holds no usable key."""
    where = f"the API key file {path} ({source})"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {_reason(exc)}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"cannot read {where}: Is a directory")
        if not stat.S_ISREG(mode):
            raise ConfigError(f"cannot read {where}: it is not a regular file (a FIFO?)")
        data = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {_reason(exc)}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise ConfigError(f"{where} is larger than {MAX_KEY_FILE_BYTES // 1024} KiB; not a key")
    try:
        key = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not text (UTF-8); not a key") from None
    if not key:
        raise ConfigError(f"{where} is empty")
    return check_api_key(key, where)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _credential(cred_dir: str, name: str) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/name`` if something is there (a file, or anything that
    ``_read_key_file`` will then refuse), None if nothing is; ConfigError naming the
    path if it cannot even be looked at (a directory syncd may not search)."""
    path = Path(cred_dir) / name
    try:
        path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise ConfigError(
                f"CREDENTIALS_DIRECTORY {cred_dir} is not a directory; cannot look for "
                f"the credential {name!r}"
            ) from None
        raise ConfigError(
            f"cannot look for the systemd credential {path}: {_reason(exc)} (is the "
            "service's user allowed to read $CREDENTIALS_DIRECTORY?)"
        ) from None
    return path


def _find_key(environ: Mapping[str, str]) -> tuple[str, AuthHeader] | None:
    key = _nonempty(environ, "OPENAI_API_KEY")
    if key:
        return check_api_key(key, "OPENAI_API_KEY"), "bearer"
    key_file = _nonempty(environ, "OPENAI_API_KEY_FILE")
    if key_file:
        return _read_key_file(Path(key_file), "OPENAI_API_KEY_FILE"), "bearer"
    cred_dir = _nonempty(environ, "CREDENTIALS_DIRECTORY")
    credential = _credential(cred_dir, CREDENTIAL_NAME) if cred_dir else None
    if credential is not None:
        return _read_key_file(credential, "systemd credential"), "bearer"
    key = _nonempty(environ, "AZURE_OPENAI_API_KEY")
    if key:
        return check_api_key(key, "AZURE_OPENAI_API_KEY"), "api-key"
    credential = _credential(cred_dir, AZURE_CREDENTIAL_NAME) if cred_dir else None
    if credential is not None:
        return _read_key_file(credential, "systemd credential"), "api-key"
    return None


def masked_url(url: str) -> str:
    """``url`` with any ``user:password@`` shown as ``***@`` (for messages)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def check_base_url(url: str, source: str) -> str:
    """``url`` without a trailing slash; ConfigError unless it is an http(s) URL with a
    host and without credentials, query or fragment (module docstring)."""
    shown = ascii(masked_url(url.strip()))
    try:
        parts = urlsplit(url.strip())
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{source}: {shown} is not a base URL") from None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ConfigError(
            f"{source}: {shown} carries a user name or password; syncd sends the API "
            "key (OPENAI_API_KEY) and nothing else, and a URL is shown in messages and "
            "in `ps`: give the URL without credentials"
        )
    if parts.scheme not in ("http", "https") or not hostname:
        raise ConfigError(f"{source}: {shown} is not a base URL like https://api.openai.com/v1")
    if parts.query or parts.fragment:
        raise ConfigError(f"{source}: {shown} must not carry a query or fragment")
    if not url.strip().isascii() or not url.strip().isprintable():
        raise ConfigError(f"{source}: {shown} holds a control or non-ASCII character")
    return url.strip().rstrip("/")


def _answer_deadline(environ: Mapping[str, str]) -> float:
    raw = _nonempty(environ, "SYNCD_ANSWER_DEADLINE")
    if raw is None:
        return DEFAULT_ANSWER_DEADLINE
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise ConfigError(f"SYNCD_ANSWER_DEADLINE must be 0..3600 seconds, not {raw[:40]!r}")
    return seconds


def remote_settings_from_env(
    environ: Mapping[str, str] = os.environ,
    base_url: str | None = None,
    require_key: bool = True,
) -> RemoteSettings:
    """Settings from the environment (see the module docstring for the order).

    ``base_url`` is the ``--base-url`` option and wins over ``OPENAI_BASE_URL``. A missing
    key raises ConfigError saying how to provide one, unless ``require_key`` is false
    (then the key is empty and no auth header is sent).
    """
    if base_url is not None:
        url = check_base_url(base_url, "--base-url")
    elif _nonempty(environ, "OPENAI_BASE_URL"):
        url = check_base_url(environ["OPENAI_BASE_URL"], "OPENAI_BASE_URL")
    else:
        url = DEFAULT_BASE_URL
    found = _find_key(environ)
    if found is None and require_key:
        raise ConfigError(MISSING_KEY_MESSAGE)
    key, auth_header = found if found is not None else ("", "bearer")
    return RemoteSettings(
        base_url=url,
        api_key=key,
        organization=_nonempty(environ, "OPENAI_ORG_ID"),
        project=_nonempty(environ, "OPENAI_PROJECT_ID"),
        azure_api_version=_nonempty(environ, "OPENAI_API_VERSION")
        or _nonempty(environ, "AZURE_OPENAI_API_VERSION"),
        auth_header=auth_header,
        answer_deadline=_answer_deadline(environ),
    )
