"""The planner's rules for holding deletes back: the guard's window, approved deletes,
and the delete delay (issue 17). Pure: no I/O, ``now`` passed in."""

from __future__ import annotations

from syncd.durations import format_duration, parse_duration
from syncd.local.scan import LocalFile
from syncd.state.deletes import PendingDelete
from syncd.state.ledger import LedgerRow
from syncd.sync.plan import ActionKind, PlanOptions, Skip, plan

NOW = 100_000.0
A = ActionKind


def rows(count: int) -> dict[str, LedgerRow]:
    return {
        f"f{n:02}": LedgerRow(f"f{n:02}", 3, 100, 1, f"h{n}", "user_data", f"file-{n}", 3)
        for n in range(count)
    }


def present(ledger: dict[str, LedgerRow], paths: list[str]) -> dict[str, LocalFile]:
    return {p: LocalFile(p, 3, 100, 1, ledger[p].sha256) for p in paths}


def test_window_counts_deletes_of_earlier_passes() -> None:
    """8 deletes after 7 others in the window: 15 of 24 files, refused (alone: allowed)."""
    ledger = rows(17)  # 24 tracked before the 7 earlier deletes
    local = present(ledger, list(ledger)[8:])
    alone = plan(local, ledger, None, now=NOW, options=PlanOptions())
    assert alone.refusal is None and len(alone.of_kind(A.DELETE)) == 8
    windowed = plan(
        local, ledger, None, now=NOW, options=PlanOptions(recent_deletes=7, guard_window=600)
    )
    assert windowed.of_kind(A.DELETE) == [] and len(windowed.refused) == 8
    assert "15 of 24 mirrored files" in (windowed.refusal or "")
    assert "the 7 deleted in the last 10 min" in (windowed.refusal or "")


def test_window_counts_against_an_explicit_max_delete() -> None:
    """With max_delete, the window's deletes count against the limit too."""
    ledger = rows(40)
    local = present(ledger, list(ledger)[3:])
    options = PlanOptions(max_delete=5, recent_deletes=3, guard_window=60)
    result = plan(local, ledger, None, now=NOW, options=options)
    assert len(result.refused) == 3 and "6 with the 3 deleted" in (result.refusal or "")


def test_approved_deletes_pass_the_guard_and_only_those() -> None:
    """The approved copies go; a copy not approved (or of another file id) is guarded."""
    ledger = rows(20)
    local = present(ledger, list(ledger)[12:])  # 12 deleted locally
    approved = frozenset((p, ledger[p].file_id or "") for p in list(ledger)[:11])
    result = plan(local, ledger, None, now=NOW, options=PlanOptions(approved=approved))
    assert result.refusal is None and len(result.of_kind(A.DELETE)) == 12
    reuploaded = frozenset((p, "file-other") for p, _ in approved)
    again = plan(local, ledger, None, now=NOW, options=PlanOptions(approved=reuploaded))
    assert again.refusal is not None and len(again.refused) == 12


def test_refusal_names_the_approve_command() -> None:
    """With an approve hint the refusal says the exact command, with --max."""
    ledger = rows(20)
    options = PlanOptions(approve_hint="syncd approve-deletes /srv/data")
    result = plan({}, ledger, None, now=NOW, options=options)
    assert "`syncd approve-deletes /srv/data --max 20`" in (result.refusal or "")


def pending(path: str, due: float, file_id: str = "file-0") -> dict[str, PendingDelete]:
    return {path: PendingDelete(path, file_id, since=due - 600, due_at=due)}


def test_delete_delay_defers_then_deletes_when_due() -> None:
    """Deleted locally: deferred; pending and not due: skipped; due: deleted."""
    ledger = rows(1)
    first = plan({}, ledger, None, now=NOW, options=PlanOptions(delete_delay=600))
    assert [a.kind for a in first.actions] == [A.DEFER]
    waiting = PlanOptions(delete_delay=600, pending_deletes=pending("f00", NOW + 1))
    assert plan({}, ledger, None, now=NOW, options=waiting).skipped == (("f00", Skip.DELAYED),)
    due = PlanOptions(delete_delay=600, pending_deletes=pending("f00", NOW))
    result = plan({}, ledger, None, now=NOW, options=due)
    assert [a.kind for a in result.actions] == [A.DELETE] and result.cancelled == ()


def test_file_back_with_same_content_cancels_without_upload() -> None:
    """A pending delete whose file is back unchanged: cancelled, nothing uploaded."""
    ledger = rows(1)
    local = {"f00": LocalFile("f00", 3, 555, 7, "h0")}  # restored: new stat, same hash
    options = PlanOptions(delete_delay=600, pending_deletes=pending("f00", NOW + 60))
    result = plan(local, ledger, None, now=NOW, options=options)
    assert result.cancelled == ("f00",)
    assert [a.kind for a in result.actions] == [A.REFRESH]


def test_file_back_with_other_content_is_replaced() -> None:
    """A pending delete whose file is back changed: cancelled, and a normal replace."""
    ledger = rows(1)
    local = {"f00": LocalFile("f00", 5, 555, 7, "other")}
    options = PlanOptions(delete_delay=600, pending_deletes=pending("f00", NOW + 60))
    result = plan(local, ledger, None, now=NOW, options=options)
    assert result.cancelled == ("f00",) and [a.kind for a in result.actions] == [A.REPLACE]


def test_due_delayed_deletes_are_guarded() -> None:
    """Deletes coming due together still meet the mass-delete guard."""
    ledger = rows(20)
    due = {
        p: PendingDelete(p, r.file_id or "", since=NOW - 700, due_at=NOW - 100)
        for p, r in ledger.items()
    }
    options = PlanOptions(delete_delay=600, pending_deletes=due)
    result = plan({}, ledger, None, now=NOW, options=options)
    assert len(result.refused) == 20 and result.of_kind(A.DELETE) == []


def test_durations_parse_and_print() -> None:
    """10m, 2h, 30s, 1d and plain seconds parse; garbage does not; words come back."""
    assert [parse_duration(v) for v in ("10m", "2h", "30s", "1d", "90", 45, 1.5)] == [
        600.0,
        7200.0,
        30.0,
        86400.0,
        90.0,
        45.0,
        1.5,
    ]
    assert [parse_duration(v) for v in ("", "10x", "-5", "m", "ten minutes", True, None)] == [
        None
    ] * 7
    assert [format_duration(s) for s in (9.2, 600, 3900, 90000)] == [
        "10 s",
        "10 min",
        "1 h 5 min",
        "1 d 1 h",
    ]
