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

The key is kept out of ``repr()``/``str()`` so that it cannot leak through a log line or
a traceback that prints the settings.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from syncd.errors import ConfigError
from syncd.remote.pacing import PacingConfig

DEFAULT_BASE_URL = "https://api.openai.com/v1"
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
    opening a connection. ``max_attempts`` is per call, first try included;
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


def _read_key_file(path: Path, source: str) -> str:
    """The key held in ``path``, stripped of surrounding whitespace; ConfigError if unusable."""
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read the API key from {path} ({source}): {reason}") from exc
    if not key:
        raise ConfigError(f"the API key file {path} ({source}) is empty")
    return key


def _find_key(environ: Mapping[str, str]) -> tuple[str, AuthHeader] | None:
    key = _nonempty(environ, "OPENAI_API_KEY")
    if key:
        return key, "bearer"
    key_file = _nonempty(environ, "OPENAI_API_KEY_FILE")
    if key_file:
        return _read_key_file(Path(key_file), "OPENAI_API_KEY_FILE"), "bearer"
    cred_dir = _nonempty(environ, "CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / CREDENTIAL_NAME).exists():
        return _read_key_file(Path(cred_dir) / CREDENTIAL_NAME, "systemd credential"), "bearer"
    key = _nonempty(environ, "AZURE_OPENAI_API_KEY")
    if key:
        return key, "api-key"
    if cred_dir and (Path(cred_dir) / AZURE_CREDENTIAL_NAME).exists():
        path = Path(cred_dir) / AZURE_CREDENTIAL_NAME
        return _read_key_file(path, "systemd credential"), "api-key"
    return None


def check_base_url(url: str, source: str) -> str:
    """``url`` without a trailing slash; ConfigError unless it is an http(s) URL with a host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{source}: {url!r} is not a base URL like https://api.openai.com/v1")
    if parts.query or parts.fragment:
        raise ConfigError(f"{source}: {url!r} must not carry a query or fragment")
    return url.strip().rstrip("/")


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
    )
