"""Durations as people write them in a config: ``30s``, ``10m``, ``2h``, ``1d``, or plain
seconds (``600``, ``1.5``), and back into words for messages (``10 min``)."""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")


def parse_duration(value: object) -> float | None:
    """Seconds for ``value`` (a number, or a string as in the module docstring), or None
    when it does not parse (negative, empty, another unit, garbage)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value.strip().lower())
        if match is None:
            return None
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def format_duration(seconds: float) -> str:
    """``45 s``, ``10 min``, ``2 h 5 min``, ``3 d 4 h`` (rounded up to the second)."""
    total = max(0, math.ceil(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
