"""The Files API's error envelope: ``{"error": {"message", "type", "param", "code"}}``.

Handlers raise ``ApiError``; the app turns it into the envelope with its status. All four
keys are always present (``param`` and ``code`` may be null), as the spec's ``Error``
schema requires.
"""

from __future__ import annotations

from starlette.responses import JSONResponse


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
