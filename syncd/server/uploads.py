"""The Uploads API (``/v1/uploads``): not built yet."""

from __future__ import annotations

from starlette.routing import BaseRoute


def upload_routes() -> list[BaseRoute]:
    return []
