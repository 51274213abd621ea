"""`syncd status` says in words when a failing file is tried again."""

from __future__ import annotations

import pytest

from syncd.commands.status import retry_in


@pytest.mark.parametrize(
    ("wait", "expected"),
    [
        (None, "retrying at the next pass"),
        (-5.0, "retrying at the next pass"),
        (0.2, "retrying in 1 s"),
        (59.5, "retrying in 1 min"),
        (60.0, "retrying in 1 min"),
        (250.0, "retrying in 4 min 10 s"),
        (3600.0, "retrying in 1 h 0 min"),
        (5400.0, "retrying in 1 h 30 min"),
    ],
)
def test_retry_in_words(wait: float | None, expected: str) -> None:
    """The backoff left is rounded up and told in s, min or h; a past due time is 'next pass'."""
    now = 1_000.0
    assert retry_in(None if wait is None else now + wait, now) == expected
