"""Window arithmetic, the server-clock offset and the verdict on candidates (pure
functions of ``syncd.sync.ownership``), table-driven."""

from __future__ import annotations

import pytest

from syncd.sync.ownership import (
    EPSILON,
    SIGN_OF_LIFE_SLACK,
    UNMEASURED,
    Attempt,
    Candidate,
    Doubt,
    Offset,
    Window,
    created_sample,
    date_sample,
    estimate,
    judge,
    request_window,
)

T = 1_700_000_000.0
EXACT = Offset(0.0, 0.0)


# -- offset samples and their estimate -------------------------------------------------


def test_a_date_header_bounds_the_offset_by_its_second_and_staleness() -> None:
    """Date D seen between t0 and t1: the offset is in [D - t1, D + 1 + stale - t0]."""
    sample = date_sample(T + 0.2, T + 0.3, int(T) + 600)
    assert (sample.low, sample.high) == pytest.approx((599.7, 601.8))


def test_an_upload_bounds_the_offset_by_its_created_at() -> None:
    """created_at C of an upload sent at s, answered at e: offset in [C - e, C + 1 - s]."""
    sample = created_sample(T + 0.5, T + 0.75, int(T) + 10)
    assert (sample.low, sample.high) == pytest.approx((9.25, 10.5))


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], None),
        ([Offset(1, 3)], Offset(1, 3)),
        ([Offset(1, 3), Offset(2, 4)], Offset(2, 3)),
        ([Offset(1, 3), Offset(2, 4), Offset(2.5, 5)], Offset(2.5, 3)),
        # one outlier (a bad header) is dropped: the two that agree win
        ([Offset(1, 3), Offset(50, 51), Offset(2, 4)], Offset(2, 3)),
        # a clock stepped: a tie goes to the set holding the latest sample
        ([Offset(1, 2), Offset(10, 11)], Offset(10, 11)),
        ([Offset(3, 1)], None),  # not an interval
    ],
)
def test_estimate_intersects_the_largest_agreeing_set(
    samples: list[Offset], expected: Offset | None
) -> None:
    """The estimate is the intersection of the most samples that share a point."""
    assert estimate(samples) == expected


# -- windows ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "offset", "expected"),
    [
        # a lost answer: from the start to the moment the client gave up, plus epsilon
        ({"gave_up": T + 2.5}, EXACT, Window(int(T - EPSILON), int(T + 3.5), int(T + 3.5))),
        # the server runs 10 minutes ahead, measured to within a second
        (
            {"gave_up": T + 2.5},
            Offset(600, 601),
            Window(int(T + 599), int(T + 604.5), int(T + 604.5)),
        ),
        # a crash: surely by the last sign of life + slack, possibly up to the time limit
        (
            {"alive": T + 30, "time_limit": 600},
            EXACT,
            Window(int(T - 1), int(T + 30 + SIGN_OF_LIFE_SLACK + 1), int(T + 631)),
        ),
        # a sign of life from before the request started counts from its start
        (
            {"alive": T - 100, "time_limit": 60},
            EXACT,
            Window(int(T - 1), int(T + SIGN_OF_LIFE_SLACK + 1), int(T + 61)),
        ),
        # unmeasured: the old fixed slack on both sides, and nothing sure
        (
            {"gave_up": T + 1},
            UNMEASURED,
            Window(int(T - 121), int(T - 122), int(T + 122)),
        ),
    ],
)
def test_request_windows(kwargs: dict[str, float], offset: Offset, expected: Window) -> None:
    """Windows in server seconds from start, end (given up or last sign of life), offset."""
    assert request_window(T, offset, **kwargs) == expected


# -- verdicts --------------------------------------------------------------------------

W = Window(100, 110, 110)  # a lost answer's window
CRASHED = Window(100, 110, 700)  # a crash's: sure to 110, possibly to 700
A = Attempt(1, 5, "aa", W)
B_OTHER = Attempt(0, 5, "bb", Window(90, 99, 99))  # an earlier upload of other content


def c(file_id: str, created: int, **kw: object) -> Candidate:
    return Candidate(file_id, 5, created, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "attempts", "candidates", "adopter", "proof", "adopt", "delete", "keep"),
    [
        ("nothing stored", [A], [], 1, False, None, [], {}),
        ("one copy: adopted", [A], [c("f1", 105)], 1, False, "f1", [], {}),
        ("outside the window", [A], [c("f1", 99), c("f2", 111)], 1, False, None, [], {}),
        ("other size", [A], [Candidate("f1", 6, 105)], 1, False, None, [], {}),
        (
            "two copies (a replay, or ours and a stranger's): both kept",
            [A],
            [c("f1", 105), c("f2", 106)],
            1,
            False,
            None,
            [],
            {"f1": Doubt.SEVERAL, "f2": Doubt.SEVERAL},
        ),
        (
            "another ledger's open upload may have made it",
            [A],
            [c("f1", 105, foreign=True)],
            1,
            False,
            None,
            [],
            {"f1": Doubt.OTHER_LEDGER},
        ),
        (
            "a crash: a copy after the last sign of life is kept",
            [Attempt(1, 5, "aa", CRASHED)],
            [c("f1", 300)],
            1,
            False,
            None,
            [],
            {"f1": Doubt.LATE},
        ),
        (
            "a crash: the sure copy is adopted, a late one kept",
            [Attempt(1, 5, "aa", CRASHED)],
            [c("f1", 105), c("f2", 300)],
            1,
            False,
            "f1",
            [],
            {"f2": Doubt.LATE},
        ),
        (
            "downloadable, unchecked: kept",
            [A],
            [c("f1", 105)],
            1,
            True,
            None,
            [],
            {"f1": Doubt.UNPROVEN},
        ),
        ("downloadable, checked", [A], [c("f1", 105, sha256="aa")], 1, True, "f1", [], {}),
        (
            "downloadable, other content: not ours at all",
            [A],
            [c("f1", 105, sha256="zz")],
            1,
            True,
            None,
            [],
            {},
        ),
        (
            "two copies, content picks ours",
            [A],
            [c("f1", 105, sha256="aa"), c("f2", 106, sha256="zz")],
            1,
            True,
            "f1",
            [],
            {},
        ),
        (
            "an earlier attempt's single copy is deleted",
            [B_OTHER, A],
            [c("f0", 95), c("f1", 105)],
            1,
            False,
            "f1",
            ["f0"],
            {},
        ),
        (
            "windows overlap, other content: ours, but whose? deleted, nothing adopted",
            [Attempt(0, 5, "bb", Window(100, 108, 108)), A],
            [c("f1", 105)],
            1,
            False,
            None,
            ["f1"],
            {},
        ),
        (
            "windows overlap, same content: adopted",
            [Attempt(0, 5, "aa", Window(100, 108, 108)), A],
            [c("f1", 105)],
            1,
            False,
            "f1",
            [],
            {},
        ),
        (
            "three quick retries, two late-visible copies: one each, newest adopted",
            [
                Attempt(0, 5, "aa", Window(99, 104, 104)),
                Attempt(2, 5, "aa", Window(101, 106, 106)),
                Attempt(3, 5, "aa", Window(103, 110, 110)),
            ],
            [c("g0", 102), c("g2", 103)],
            3,
            False,
            "g2",
            ["g0"],
            {},
        ),
        (
            "two retries, three copies: more than one each, all kept",
            [Attempt(0, 5, "aa", Window(99, 104, 104)), A],
            [c("g0", 103), c("g1", 104), c("g2", 104)],
            1,
            False,
            None,
            [],
            {"g0": Doubt.SEVERAL, "g1": Doubt.SEVERAL, "g2": Doubt.SEVERAL},
        ),
        (
            "one attempt, a copy of ours and one another mirror may have made: all kept",
            [A],
            [c("f1", 105), c("f2", 105, foreign=True)],
            1,
            False,
            None,
            [],
            {"f1": Doubt.SEVERAL, "f2": Doubt.OTHER_LEDGER},
        ),
        (
            "the sweep: a late-visible copy in a closed attempt's window is deleted",
            [A],
            [c("f1", 105)],
            None,
            False,
            None,
            ["f1"],
            {},
        ),
        (
            "the sweep: two copies are kept",
            [A],
            [c("f1", 105), c("f2", 105)],
            None,
            False,
            None,
            [],
            {"f1": Doubt.SEVERAL, "f2": Doubt.SEVERAL},
        ),
    ],
)
def test_judge(
    name: str,
    attempts: list[Attempt],
    candidates: list[Candidate],
    adopter: int | None,
    proof: bool,
    adopt: str | None,
    delete: list[str],
    keep: dict[str, Doubt],
) -> None:
    """A copy is adopted or deleted only when it is provably one request's; others kept."""
    verdict = judge(attempts, candidates, adopter=adopter, proof=proof)
    assert (verdict.adopt, verdict.delete, verdict.keep) == (adopt, delete, keep), name
