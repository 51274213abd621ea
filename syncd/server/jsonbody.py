"""JSON request bodies, read within bounds: at most ``MAX_JSON_BODY_BYTES`` and nested at
most ``MAX_JSON_DEPTH`` levels.

The Uploads API's bodies (create, complete) are two levels deep and a few KB (a
``complete`` of 10,000 part ids is about 300 KB); the fault configuration is three.
Past the size cap the rest of the body is read and dropped and the answer is a 413;
deeper nesting, or anything ``json`` cannot parse (bad UTF-8, an integer of more than
4,300 digits, recursion), is a 400 — never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from syncd.server.envelope import ApiError, invalid_request

MAX_JSON_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 16


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(raw: bytes) -> Any:
    """The JSON value in ``raw``, or a 400 for anything not JSON or nested too deeply."""
    try:
        value = json.loads(raw)
    except RecursionError:
        value, depth = None, MAX_JSON_DEPTH + 1
    except ValueError:  # also UnicodeDecodeError, and ints beyond 4,300 digits
        raise invalid_request(
            "We could not parse the JSON body of your request. The body must be a JSON object."
        ) from None
    else:
        depth = json_depth(value)
    if depth > MAX_JSON_DEPTH:
        raise invalid_request(
            f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.",
            code="invalid_json",
        )
    return value


async def read_json(request: Request) -> Any:
    """The request's JSON value, read in bounded memory (module docstring)."""
    raw = bytearray()
    async for chunk in request.stream():
        if len(raw) <= MAX_JSON_BODY_BYTES:
            raw += chunk  # past the cap the rest is read and dropped
    if len(raw) > MAX_JSON_BODY_BYTES:
        raise ApiError(413, f"The JSON body is larger than {MAX_JSON_BODY_BYTES} bytes.")
    return parse_json(bytes(raw))


async def read_json_object(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The JSON object body, or the real API's 400s for bad JSON and unknown keys."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid_request(
            "We could not parse the JSON body of your request. The body must be a JSON object."
        )
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid_request(
            f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0]
        )
    return body
