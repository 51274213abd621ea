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
# GET /files/{id}/content serves only these purposes (the platform's outputs included);
# the real API answers 400 "Not allowed to download files of purpose: user_data" for the
# others (user_data, assistants, fine-tune, evals). Observed, not in the spec: for those
# the remote side is a mirror, not a backup, and nothing may depend on reading them back.
DOWNLOADABLE_PURPOSES = frozenset(
    {"batch", "vision", "batch_output", "fine-tune-results", "assistants_output"}
)


def may_download(purpose: str | None) -> bool:
    """Whether asking for the content of a file of ``purpose`` can succeed; an unknown
    purpose (None: an old record) may, so callers ask and handle a refusal."""
    return purpose is None or purpose in DOWNLOADABLE_PURPOSES


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


# -- what an answer may hold -----------------------------------------------------------------

# Every field of every answer is checked at the boundary (``RemoteFile.from_json``,
# ``check_file_id``): a server syncd does not control must not crash it, make it send a
# request to another URL, or hand it a number it cannot use.
MAX_FILE_ID_CHARS = 256  # OpenAI's ids are ~30 characters; Azure's and others' similar
# A project holds at most 2.5 TB, so no one file is larger.
MAX_REMOTE_BYTES = 2_500 * 1000**3
# The last second whose nanoseconds fit in 64 bits (in 2262): ``pull --all`` sets a
# file's mtime from ``created_at``, and ``ls`` prints it as a date.
MAX_TIMESTAMP = (2**63 - 1) // 1_000_000_000
_DOT_SEGMENTS = frozenset({".", ".."})


def _kind(value: object) -> str:
    """What a JSON value is, for a message (never the value: it may be huge or hostile)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_file_id(value: object) -> str:
    """``value`` if it can name a remote file in a URL, else ``ValueError`` saying why.

    A usable id is a non-empty string of at most ``MAX_FILE_ID_CHARS`` characters that
    is exactly one path segment: no ``/`` or ``\\`` (which some servers read as one),
    not ``.`` or ``..`` (which URL normalisation turns into a parent:
    ``DELETE /v1/files/..`` is ``DELETE /v1``), and only printable characters (no
    control characters, NUL included, no bidi overrides that make text print as
    something it is not, no lone surrogates, which cannot be sent). It is then sent
    percent-encoded.
    """
    if type(value) is not str:
        raise ValueError(f"the file id is {_kind(value)}, not a string")
    if not value or len(value) > MAX_FILE_ID_CHARS:
        raise ValueError(
            "the file id is empty" if not value else "the file id is too long to be one"
        )
    if value in _DOT_SEGMENTS or "/" in value or "\\" in value or not value.isprintable():
        shown = ascii(value[:64])
        raise ValueError(f"the file id {shown} is not one safe path segment")
    return value


def _integer(data: dict[str, Any], name: str, file_id: str, high: int) -> int | None:
    """The integer field ``name`` (None when missing or null); ``ValueError`` for any
    other type (a boolean, a float, a string) or a value outside 0..high."""
    value = data.get(name)
    if value is None:
        return None
    if type(value) is not int:
        raise ValueError(f"file {file_id}: {name!r} is {_kind(value)}, not an integer")
    if not 0 <= value <= high:
        raise ValueError(f"file {file_id}: {name!r} is out of range (0..{high})")
    return value


def _string(data: dict[str, Any], name: str, file_id: str, default: str) -> str:
    value = data.get(name)
    if value is None:
        return default
    if type(value) is not str:
        raise ValueError(f"file {file_id}: {name!r} is {_kind(value)}, not a string")
    return value


@dataclass(frozen=True, slots=True)
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
    def from_json(cls, data: object) -> RemoteFile:
        """The file an answer describes; ``ValueError`` naming the first bad field.

        Strict and cheap (plain checks: it runs once per listed file): the id must pass
        ``check_file_id``; ``bytes``, ``created_at`` and ``expires_at`` must be integers
        (not booleans, floats or strings) in range; ``filename``, ``purpose`` and
        ``status`` strings. Missing or null ``bytes``/``created_at`` count as 0,
        ``status`` as ``processed``, ``filename``/``purpose`` as empty, as before.
        """
        if type(data) is not dict:
            raise ValueError(f"a file entry is {_kind(data)}, not an object")
        # The common case in plain comparisons; the helpers only run to say what is wrong
        # (or to read a missing field): 100,000 entries must take well under a second.
        get = data.get
        file_id = get("id")
        if (
            type(file_id) is not str
            or not 0 < len(file_id) <= MAX_FILE_ID_CHARS
            or file_id in _DOT_SEGMENTS
            or "/" in file_id
            or "\\" in file_id
            or not file_id.isprintable()
        ):
            file_id = check_file_id(file_id)
        size = get("bytes")
        if type(size) is not int or not 0 <= size <= MAX_REMOTE_BYTES:
            size = _integer(data, "bytes", file_id, MAX_REMOTE_BYTES) or 0
        created = get("created_at")
        if type(created) is not int or not 0 <= created <= MAX_TIMESTAMP:
            created = _integer(data, "created_at", file_id, MAX_TIMESTAMP) or 0
        expires = get("expires_at")
        if expires is not None and (type(expires) is not int or not 0 <= expires <= MAX_TIMESTAMP):
            expires = _integer(data, "expires_at", file_id, MAX_TIMESTAMP)
        filename = get("filename")
        if type(filename) is not str:
            filename = _string(data, "filename", file_id, "")
        purpose = get("purpose")
        if type(purpose) is not str:
            purpose = _string(data, "purpose", file_id, "")
        status = get("status")
        if type(status) is not str or not status:
            status = _string(data, "status", file_id, "processed") or "processed"
        return cls(file_id, filename, size, created, purpose, status, expires)


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
