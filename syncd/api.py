"""Facts about the Files API that the client and ``syncd serve`` share.

One owner for each: the purposes and what each allows, the size and time limits, the
shapes of a file and of a pending upload, and how a filename travels on the wire.
Sources: the published spec (``openapi-files.yaml``) and the facts it does not state
(``docs/restore.md`` and the project's notes on the API): which purposes may be
downloaded, the Uploads API's limits, batch limits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# -- purposes ------------------------------------------------------------------------------

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
# Purposes whose files must be JSON Lines (``.jsonl``, one JSON object per line).
JSONL_PURPOSES = ("fine-tune", "batch", "evals")
# Purposes the Uploads API (large files, in parts) accepts.
UPLOADS_API_PURPOSES = ("assistants", "batch", "fine-tune", "vision")
# Purposes whose content ``GET /files/{id}/content`` serves: the real API answers 400 for
# user_data, assistants, fine-tune and evals (observed, not in the spec; the project's
# notes on the API). Nothing may try to download a file of another purpose.
DOWNLOADABLE_PURPOSES = (
    "batch",
    "vision",
    "batch_output",
    "fine-tune-results",
    "assistants_output",
)

# -- limits --------------------------------------------------------------------------------

MAX_FILE_BYTES = 512 * 1000 * 1000  # POST /files: the API's "512 MB"
MAX_UPLOAD_BYTES = 8 * 1000 * 1000 * 1000  # the Uploads API's "8 GB"
MAX_PART_BYTES = 64 * 1024 * 1024  # one part: "64 MB", which the SDK and servers take as MiB
UPLOAD_LIFETIME_SECONDS = 3600  # a pending upload expires an hour after it was created
EXPIRES_MIN_SECONDS = 3600  # expires_after[seconds]: one hour ...
EXPIRES_MAX_SECONDS = 2_592_000  # ... to 30 days
BATCH_MAX_BYTES = 200 * 1000 * 1000  # a batch input file: 200 MB ...
BATCH_MAX_LINES = 50_000  # ... and 50,000 requests
BATCH_KEYS = ("custom_id", "method", "url", "body")  # what every batch line holds
BATCH_DEFAULT_EXPIRY_SECONDS = 30 * 86400  # batch files expire after 30 days by default
LIST_PAGE_LIMIT = 10_000  # GET /files: the largest (and default) ``limit``


@dataclass(frozen=True)
class RemoteFile:
    """One file as the Files API describes it (the ``OpenAIFile`` schema)."""

    id: str
    filename: str
    bytes: int
    created_at: int
    purpose: str
    status: str = "processed"
    expires_at: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RemoteFile:
        return cls(
            id=str(data["id"]),
            filename=str(data.get("filename", "")),
            bytes=int(data.get("bytes") or 0),
            created_at=int(data.get("created_at") or 0),
            purpose=str(data.get("purpose", "")),
            status=str(data.get("status") or "processed"),
            expires_at=int(data["expires_at"]) if data.get("expires_at") is not None else None,
        )


@dataclass(frozen=True)
class RemoteUpload:
    """A pending upload as ``POST /uploads`` answers it (the ``Upload`` schema, in part)."""

    id: str
    expires_at: int
    status: str = "pending"


# -- filenames on the wire -------------------------------------------------------------------

# How httpx (and so the official SDK) writes a filename into Content-Disposition: the
# HTML5 form encoding, '"' and control characters other than ESC percent-encoded.
_WIRE_ESCAPES = {'"': "%22", **{chr(c): f"%{c:02X}" for c in range(0x20) if c != 0x1B}}
_WIRE_PATTERN = re.compile("|".join(re.escape(c) for c in _WIRE_ESCAPES))


def wire_filename(filename: str) -> str:
    """The filename a server stores for ``filename`` sent in a multipart upload.

    httpx percent-encodes ``"`` and control characters (a newline becomes ``%0A``) and
    servers do not decode them, so a path holding such characters comes back changed.
    Everything else, non-ASCII letters and ``/`` included, arrives as it was given.
    Reconciliation must match remote files against ``wire_filename(name)``.
    """
    return _WIRE_PATTERN.sub(lambda m: _WIRE_ESCAPES[m.group(0)], filename)
