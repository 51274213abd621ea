"""Facts about the Vector Stores API that the client, the config and ``syncd serve`` share.

One owner for each: the limits (attributes, chunking, batches, list pages), which
purposes and file types file search takes, and the shapes of a store, a store file and
a file batch as syncd reads them. Sources: the published spec
(``openapi-vector-stores.yaml``; most limits are in its descriptions, not its schema
keywords) and the project's notes on the API. Each check returns one sentence naming
what is wrong, or None; callers add where the value came from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from syncd.api import check_file_id

# -- limits ------------------------------------------------------------------------------

MAX_ATTRIBUTES = 16  # key-value pairs per store file (and metadata pairs per store)
MAX_ATTRIBUTE_KEY = 64  # characters
MAX_ATTRIBUTE_STRING = 512  # characters of a string value
MIN_CHUNK_TOKENS = 100  # static chunking: max_chunk_size_tokens from 100 ...
MAX_CHUNK_TOKENS = 4096  # ... to 4096, overlap at most half of it
AUTO_CHUNK_TOKENS = 800  # what `auto` means today: 800 tokens ...
AUTO_CHUNK_OVERLAP = 400  # ... overlapping by 400
MAX_BATCH_FILES = 2000  # file_ids or files per file batch
MAX_CREATE_FILE_IDS = 500  # file_ids when creating a store
LIST_LIMIT_MAX = 100  # `limit` of the list endpoints: 1 to 100 ...
LIST_LIMIT_DEFAULT = 20  # ... 20 by default
MIN_EXPIRY_DAYS = 1  # expires_after.days of a store
MAX_EXPIRY_DAYS = 365

FILE_STATUSES = ("in_progress", "completed", "cancelled", "failed")
ERROR_CODES = ("server_error", "unsupported_file", "invalid_file")
# Indexing failures that no retry of the same content can fix.
PERMANENT_ERROR_CODES = frozenset({"unsupported_file", "invalid_file"})
# Purposes a file may have to be attached (an assumption, see docs/vector-stores.md: the
# spec does not say; `assistants` is the documented one, `user_data` is what the
# Responses API's file inputs use and what syncd uploads by default).
ATTACHABLE_PURPOSES = ("assistants", "user_data")
# The file types file search reads (the notes' list, from the API's documentation).
FILE_SEARCH_EXTENSIONS = frozenset(
    [
        ".c",
        ".cs",
        ".cpp",
        ".doc",
        ".docx",
        ".html",
        ".java",
        ".json",
        ".md",
        ".pdf",
        ".php",
        ".pptx",
        ".py",
        ".rb",
        ".tex",
        ".txt",
        ".css",
        ".js",
        ".sh",
        ".ts",
    ]
)
BINARY_DOCUMENT_EXTENSIONS = frozenset({".doc", ".docx", ".pdf", ".pptx"})

# The attributes syncd sets on every file it attaches (user attributes may not use them).
ATTR_PATH = "path"
ATTR_SHA256 = "sha256"
ATTR_OWNER = "syncd_owner"
RESERVED_ATTRIBUTES = (ATTR_PATH, ATTR_SHA256, ATTR_OWNER)
# The store's metadata keys syncd sets on a store it creates: who made it, and the
# intent's nonce that proves a store found after a lost answer is that request's.
META_OWNER = "syncd_owner"
META_NONCE = "syncd_nonce"

AttributeValue = str | int | float | bool
Attributes = Mapping[str, AttributeValue]


def attribute_value_problem(key: str, value: Any) -> str | None:
    """Why one attribute value cannot be sent, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return f"attribute {key!r}: {value!r} is not a finite number"
        return None
    if isinstance(value, str):
        if len(value) > MAX_ATTRIBUTE_STRING:
            return (
                f"attribute {key!r}: a string value has at most {MAX_ATTRIBUTE_STRING} "
                f"characters, not {len(value)}"
            )
        return None
    return f"attribute {key!r}: {value!r} is not a string, a number or a boolean"


def attributes_problem(attributes: Any, *, reserved: tuple[str, ...] = ()) -> str | None:
    """Why a set of attributes cannot be sent (count, keys, values), or None."""
    if not isinstance(attributes, Mapping):
        return f"attributes must be a table of key = value pairs, not {attributes!r}"
    if len(attributes) > MAX_ATTRIBUTES:
        return f"at most {MAX_ATTRIBUTES} attributes per file, not {len(attributes)}"
    for key, value in attributes.items():
        if not isinstance(key, str) or not key:
            return f"attribute key {key!r} is not a non-empty string"
        if len(key) > MAX_ATTRIBUTE_KEY:
            return f"attribute key {key[:20]!r}... has {len(key)} characters (at most 64)"
        if key in reserved:
            return f"attribute {key!r} is syncd's own (reserved: {', '.join(reserved)})"
        problem = attribute_value_problem(key, value)
        if problem:
            return problem
    return None


def metadata_problem(metadata: Any) -> str | None:
    """Why a store's ``metadata`` is refused: 16 pairs, keys 64, string values 512."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        return "metadata must be an object of string values"
    if len(metadata) > MAX_ATTRIBUTES:
        return f"metadata has at most {MAX_ATTRIBUTES} pairs, not {len(metadata)}"
    for key, value in metadata.items():
        if not isinstance(key, str) or len(key) > MAX_ATTRIBUTE_KEY:
            return f"metadata key {str(key)[:20]!r} is longer than {MAX_ATTRIBUTE_KEY} characters"
        if not isinstance(value, str) or len(value) > MAX_ATTRIBUTE_STRING:
            return f"metadata value of {key!r} must be a string of at most 512 characters"
    return None


@dataclass(frozen=True)
class Chunking:
    """A static chunking strategy: chunks of ``max_tokens``, overlapping by ``overlap``."""

    max_tokens: int
    overlap: int

    def to_json(self) -> dict[str, Any]:
        """The ``chunking_strategy`` request parameter."""
        return {
            "type": "static",
            "static": {
                "max_chunk_size_tokens": self.max_tokens,
                "chunk_overlap_tokens": self.overlap,
            },
        }


def chunking_problem(max_tokens: Any, overlap: Any) -> str | None:
    """Why a static strategy is out of range (100-4096 tokens, overlap 0 to half), or None."""
    if not _whole(max_tokens) or not MIN_CHUNK_TOKENS <= max_tokens <= MAX_CHUNK_TOKENS:
        return (
            f"max_tokens must be a whole number from {MIN_CHUNK_TOKENS} to {MAX_CHUNK_TOKENS}, "
            f"not {max_tokens!r}"
        )
    if not _whole(overlap) or overlap < 0:
        return f"overlap must be a whole number >= 0, not {overlap!r}"
    if overlap * 2 > max_tokens:
        return f"overlap {overlap} is more than half of max_tokens {max_tokens}"
    return None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def file_search_extension(filename: str) -> str:
    """The lower-case extension file search judges a file by (``""`` if none)."""
    name = filename.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


# -- what answers mean ---------------------------------------------------------------------


@dataclass(frozen=True)
class FileCounts:
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    total: int = 0

    @classmethod
    def from_json(cls, data: Any) -> FileCounts:
        data = data if isinstance(data, dict) else {}
        return cls(**{k: _count(data, k) for k in cls.__dataclass_fields__})

    def to_json(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class VectorStore:
    """A store as ``VectorStoreObject`` describes it (the parts syncd reads)."""

    id: str
    name: str
    status: str
    usage_bytes: int
    file_counts: FileCounts
    created_at: int = 0
    expires_after_days: int | None = None
    expires_at: int | None = None
    last_active_at: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VectorStore:
        expires = data.get("expires_after")
        metadata = data.get("metadata")
        return cls(
            id=check_file_id(data.get("id")),
            name=str(data.get("name") or ""),
            status=str(data.get("status") or ""),
            usage_bytes=_count(data, "usage_bytes"),
            file_counts=FileCounts.from_json(data.get("file_counts")),
            created_at=_count(data, "created_at"),
            expires_after_days=_optional_int(expires.get("days"))
            if isinstance(expires, dict)
            else None,
            expires_at=_optional_int(data.get("expires_at")),
            last_active_at=_optional_int(data.get("last_active_at")),
            metadata={str(k): str(v) for k, v in metadata.items()}
            if isinstance(metadata, dict)
            else {},
        )


@dataclass(frozen=True)
class StoreFile:
    """A file attached to a store (``VectorStoreFileObject``); ``file_id`` is its id."""

    file_id: str
    store_id: str
    status: str
    usage_bytes: int = 0
    created_at: int = 0
    error_code: str | None = None
    error_message: str | None = None
    attributes: dict[str, AttributeValue] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoreFile:
        error = data.get("last_error")
        attributes = data.get("attributes")
        return cls(
            file_id=check_file_id(data.get("id")),
            store_id=str(data.get("vector_store_id") or ""),
            status=str(data.get("status") or ""),
            usage_bytes=_count(data, "usage_bytes"),
            created_at=_count(data, "created_at"),
            error_code=str(error.get("code")) if isinstance(error, dict) else None,
            error_message=str(error.get("message") or "") if isinstance(error, dict) else None,
            attributes=dict(attributes) if isinstance(attributes, dict) else {},
        )

    @property
    def owner(self) -> str | None:
        """The syncd ledger that attached it (its owner tag), or None."""
        value = self.attributes.get(ATTR_OWNER)
        return value if isinstance(value, str) else None

    @property
    def failure(self) -> str:
        """``unsupported_file: The file type is not supported.``"""
        return f"{self.error_code or 'failed'}: {self.error_message or 'no message'}"


@dataclass(frozen=True)
class FileBatch:
    """A file batch (``VectorStoreFileBatchObject``)."""

    id: str
    store_id: str
    status: str
    file_counts: FileCounts

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileBatch:
        return cls(
            id=check_file_id(data.get("id")),
            store_id=str(data.get("vector_store_id") or ""),
            status=str(data.get("status") or ""),
            file_counts=FileCounts.from_json(data.get("file_counts")),
        )


@dataclass(frozen=True)
class AttachRequest:
    """One file to attach: its id, the attributes to give it, and the
    ``chunking_strategy`` parameter (None: the server's default, auto)."""

    file_id: str
    attributes: dict[str, AttributeValue]
    chunking_strategy: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """An item of a batch's ``files`` list (and the body of a single attach)."""
        body: dict[str, Any] = {"file_id": self.file_id, "attributes": self.attributes}
        if self.chunking_strategy is not None:
            body["chunking_strategy"] = self.chunking_strategy
        return body


def _optional_int(value: Any) -> int | None:
    """An integer field that may be null; ``ValueError`` for any other type."""
    if value is None:
        return None
    if type(value) is not int:
        raise ValueError(f"{str(value)[:40]!r} is not an integer")
    return value


def _count(data: Mapping[str, Any], name: str) -> int:
    """A non-negative integer field (0 when missing or null); ``ValueError`` for any other
    type (a string, a float, a boolean) or a negative value: a malformed answer."""
    value = data.get(name)
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise ValueError(f"{name!r} is not a non-negative integer: {str(value)[:40]!r}")
    return value
