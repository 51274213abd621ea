"""The Files API's error envelope: ``{"error": {"message", "type", "param", "code"}}``.

Handlers raise ``ApiError``; the app turns it into the envelope with its status. All four
keys are always present (``param`` and ``code`` may be null), as the spec's ``Error``
schema requires. ``raw_response`` renders one for the connection layer, which answers
below HTTP's own parser (timeouts, the connection limit, malformed requests).

Statuses of our own where the real API documents none: 408 for a client too slow to
send its request, 503 over the connection limit, 507 when the store's disk is full (a
5xx, so every client retries it, where the old 400 made it look permanent).
"""

from __future__ import annotations

import errno
import json
import sqlite3
from http import HTTPStatus

from starlette.responses import JSONResponse

# ENOSPC: no space; EDQUOT: over quota; EFBIG: over the file size limit (RLIMIT_FSIZE).
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class ApiError(Exception):
    """An error answer: HTTP status plus the envelope's fields and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # the envelope's own key name
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)

    def raw_response(self) -> bytes:
        """The whole HTTP/1.1 answer as bytes, closing the connection."""
        body = json.dumps(self.body(), separators=(",", ":")).encode()
        reason = HTTPStatus(self.status).phrase
        head = [
            f"HTTP/1.1 {self.status} {reason}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            "connection: close",
            *(f"{k}: {v}" for k, v in self.headers.items()),
        ]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 ``invalid_request_error``."""
    return ApiError(400, message, param=param, code=code)


def file_not_found(file_id: str) -> ApiError:
    """The real API's 404 for an unknown, deleted or expired file."""
    return ApiError(404, f"No such File object: {file_id}", param="id")


def too_large(limit: int) -> ApiError:
    """413: the content is over the size limit.

    The real API documents the 512 MB limit but not the status that enforces it; 413 is
    what an HTTP front end answers for an oversized body, and every client (ours, the
    SDK) treats it like any other permanent 4xx.
    """
    return ApiError(
        413,
        f"File is too large: the maximum size is {limit} bytes.",
        param="file",
        code="file_too_large",
    )


def invalid_url(method: str, path: str, status: int = 404) -> ApiError:
    """The real API's answer for a path (or method) it does not serve."""
    return ApiError(status, f"Invalid URL ({method} {path})")


def request_timeout(what: str) -> ApiError:
    """408: the client took too long; the connection is closed after the answer."""
    return ApiError(
        408,
        f"Request timed out: {what}.",
        code="request_timeout",
        headers={"connection": "close"},
    )


def insufficient_storage() -> ApiError:
    """507: the store's disk is full; nothing was stored, try again later."""
    return ApiError(
        507,
        "Insufficient storage: the server could not store the file (its disk is full). "
        "Nothing was stored; try again later.",
        type="server_error",
        code="insufficient_storage",
    )


def server_error() -> ApiError:
    return ApiError(
        500, "The server had an error while processing your request.", type="server_error"
    )


def storage_error(exc: BaseException) -> ApiError | None:
    """507 for a full disk (OSError or SQLite's "database or disk is full"), else None."""
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        return insufficient_storage()
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return insufficient_storage()
    return None
