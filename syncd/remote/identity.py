"""Which remote a ledger mirrors to, without the key: ``RemoteIdentity``.

A ledger's file ids only mean something on the remote that made them, so the ledger
records which remote that is (``syncd.sync.binding`` compares and records it). What
identifies a remote here:

- **The base URL**, normalized: scheme and host in lower case, no default port, no
  trailing slash. A query is never part of it, so Azure's ``api-version`` (sent as a
  query parameter) can change without making a new remote.
- **The organization and project** (``OpenAI-Organization``/``OpenAI-Project``): one
  URL serves many accounts, and a project's files are not another project's.
- **Not the key.** A rotated key on the same account must not look like another
  remote, and nothing in a key names its account without asking the server (there is
  no "who am I" call for ordinary keys). Only a fingerprint of the key is recorded
  (``key_fingerprint``: 16 hex digits of a salted SHA-256, which cannot give the key
  back), to tell "same account, new key" apart in the log.
- **``--local``**: the embedded server's URL (a free port) and key (random) change at
  every run, so its identity is its store directory: ``local:/path/to/local-server``.

When URL, organization or project differ, the remote may still be the same account
reached another way (a proxy, a new port for ``syncd serve``, a project header added
that names the default project): the binding then asks the remote itself whether it
holds the files the ledger mirrored (file ids are random and unique: one found is
proof enough).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from syncd.remote.settings import RemoteSettings

_DEFAULT_PORTS = {"http": 80, "https": 443}
_KEY_SALT = b"syncd remote key fingerprint\0"


@dataclass(frozen=True)
class RemoteIdentity:
    """A remote as a ledger records it (``to_json``), key excluded (see module docstring)."""

    url: str
    organization: str | None = None
    project: str | None = None
    key_fingerprint: str | None = None

    def same_account(self, other: RemoteIdentity) -> bool:
        """Same URL, organization and project: the same remote whatever the key."""
        return (self.url, self.organization, self.project) == (
            other.url,
            other.organization,
            other.project,
        )

    def describe(self) -> str:
        """For messages: ``https://api.openai.com/v1 (project proj_x)``."""
        scope = [
            f"{name} {value}"
            for name, value in (("organization", self.organization), ("project", self.project))
            if value
        ]
        url = self.url.removeprefix("local:")
        where = f"the --local server of {url}" if self.url.startswith("local:") else url
        return f"{where} ({', '.join(scope)})" if scope else where

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> RemoteIdentity | None:
        """The recorded identity; None when nothing (readable) was recorded."""
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                url=str(data["url"]),
                organization=data.get("organization"),
                project=data.get("project"),
                key_fingerprint=data.get("key_fingerprint"),
            )
        except (ValueError, KeyError, TypeError):
            return None


def normalize_url(url: str) -> str:
    """``HTTPS://API.openai.com:443/v1/`` -> ``https://api.openai.com/v1``."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def key_fingerprint(key: str) -> str | None:
    """16 hex digits that tell keys apart and cannot give one back; None without a key."""
    if not key:
        return None
    return hashlib.sha256(_KEY_SALT + key.encode("utf-8")).hexdigest()[:16]


def identity_of(settings: RemoteSettings) -> RemoteIdentity:
    """The identity of the remote these settings reach."""
    return RemoteIdentity(
        url=normalize_url(settings.base_url),
        organization=settings.organization,
        project=settings.project,
        key_fingerprint=key_fingerprint(settings.api_key),
    )


def local_identity(store: Path) -> RemoteIdentity:
    """The identity of the ``--local`` server whose store is ``store``."""
    return RemoteIdentity(url=f"local:{store.resolve()}")
