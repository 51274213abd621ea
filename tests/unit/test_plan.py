"""The planner, table-driven: one local/ledger/remote situation -> one decision."""

from __future__ import annotations

from dataclasses import replace

import pytest

from syncd.api import RemoteFile
from syncd.local.rules import PathFilter, PurposeRule
from syncd.local.scan import LocalFile
from syncd.state.ledger import LedgerRow
from syncd.sync.plan import ActionKind, PlanOptions, Skip, plan

NOW = 10_000.0
A = ActionKind
S = Skip


def lf(size: int = 3, mtime: int = 100, inode: int = 1, sha: str | None = None) -> LocalFile:
    return LocalFile("a.txt", size, mtime, inode, sha)


def row(**changes: object) -> LedgerRow:
    base = LedgerRow("a.txt", 3, 100, 1, "h1", "user_data", "file-1", 3)
    return replace(base, **changes)


def failed(kind: str, size: int = 4, mtime: int = 200, sha: str = "bad", **more: object):
    return row(
        error_kind=kind,
        last_error="boom",
        failed_size=size,
        failed_mtime_ns=mtime,
        failed_inode=1,
        failed_sha256=sha,
        **more,
    )


def remote(*ids: str) -> dict[str, RemoteFile]:
    return {i: RemoteFile(i, "a.txt", 3, 1, "user_data") for i in ids}


CASES = [
    # (id, local, ledger row, remote listing, expected)
    ("new file", lf(), None, None, A.UPLOAD),
    ("unchanged stat", lf(sha="h1"), row(), None, S.UNCHANGED),
    ("touched, same hash", lf(mtime=150, sha="h1"), row(), None, A.REFRESH),
    ("touched, other hash", lf(mtime=150, sha="h2"), row(), None, A.REPLACE),
    ("touched, hash unknown", lf(mtime=150), row(), None, A.REPLACE),
    ("new inode, same hash", lf(inode=9, sha="h1"), row(), None, A.REFRESH),
    ("size differs", lf(size=4), row(), None, A.REPLACE),
    ("stale row (changed during upload)", lf(), row(sha256=None), None, A.REPLACE),
    ("deleted locally", None, row(), None, A.DELETE),
    ("never uploaded, gone", None, failed("permanent", file_id=None), None, A.FORGET),
    ("remote copy gone", lf(), row(), remote("file-other"), A.UPLOAD),
    ("gone on both sides", None, row(), remote(), A.FORGET),
    ("remote copy present", lf(), row(), remote("file-1"), S.UNCHANGED),
    ("permanent failure, same stat", lf(size=4, mtime=200), failed("permanent"), None, S.FAILED),
    (
        "permanent failure, touched same hash",
        lf(size=4, mtime=300, sha="bad"),
        failed("permanent"),
        None,
        S.FAILED,
    ),
    ("permanent failure, changed", lf(size=5), failed("permanent", file_id=None), None, A.UPLOAD),
    ("permanent failure, back to mirrored", lf(), failed("permanent"), None, A.REFRESH),
    (
        "retryable, waiting",
        lf(size=4, mtime=200),
        failed("retryable", next_attempt_at=NOW + 1),
        None,
        S.BACKOFF,
    ),
    (
        "retryable, wait over",
        lf(size=4, mtime=200),
        failed("retryable", next_attempt_at=NOW - 1),
        None,
        A.REPLACE,
    ),
    (
        "retryable new file, wait over",
        lf(size=4, mtime=200),
        failed("retryable", next_attempt_at=NOW - 1, file_id=None),
        None,
        A.UPLOAD,
    ),
    ("expired, unchanged", lf(), row(expires_at=int(NOW) - 1), remote(), S.EXPIRED),
    ("expired, changed", lf(size=9), row(expires_at=int(NOW) - 1), None, A.UPLOAD),
    ("expired, deleted locally", None, row(expires_at=int(NOW) - 1), None, A.FORGET),
    ("not yet expired", lf(), row(expires_at=int(NOW) + 1), None, S.UNCHANGED),
]


@pytest.mark.parametrize(
    ("local", "ledger_row", "listing", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decision(local, ledger_row, listing, expected) -> None:
    """Each situation yields exactly the expected action or skip reason."""
    local_map = {"a.txt": local} if local else {}
    ledger_map = {"a.txt": ledger_row} if ledger_row else {}
    result = plan(local_map, ledger_map, listing, now=NOW, options=PlanOptions())
    if isinstance(expected, Skip):
        assert result.actions == () and result.skipped == (("a.txt", expected),)
    else:
        (action,) = result.actions
        assert action.kind is expected and action.path == "a.txt"


def test_replace_names_the_old_id_and_delete_only_ledger_ids() -> None:
    """A replace carries the old id; foreign remote files never appear in a plan."""
    listing = remote("file-1", "file-foreign")
    result = plan({"a.txt": lf(size=4)}, {"a.txt": row()}, listing, now=NOW, options=PlanOptions())
    (action,) = result.actions
    assert action.replaces == "file-1"
    assert all(a.row is None or a.row.file_id != "file-foreign" for a in result.actions)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (PlanOptions(uncertain=frozenset({"a.txt"})), S.UNCERTAIN),
        (PlanOptions(uncertain=frozenset({""})), S.UNCERTAIN),  # the root could not be read
        (PlanOptions(path_filter=PathFilter(exclude=("*.txt",))), S.EXCLUDED),
        (PlanOptions(busy=frozenset({"a.txt"})), S.BUSY),
    ],
)
def test_missing_paths_that_must_not_be_deleted(options: PlanOptions, expected: Skip) -> None:
    """Unreadable, excluded and busy paths are never deleted."""
    result = plan({}, {"a.txt": row()}, None, now=NOW, options=options)
    assert result.actions == () and result.skipped == (("a.txt", expected),)


def test_uncertain_directory_covers_its_files() -> None:
    """A directory that could not be read protects the tracked files below it."""
    ledger = {p: replace(row(), path=p) for p in ("d/x", "d/e/y", "dx")}
    result = plan({}, ledger, None, now=NOW, options=PlanOptions(uncertain=frozenset({"d"})))
    assert [a.path for a in result.actions] == ["dx"]


def test_purpose_rules_choose_and_change_purposes() -> None:
    """New files get their rule's purpose; a tracked file whose rule changed is replaced."""
    rules = (PurposeRule("ft/**/*.jsonl", "fine-tune", 7200),)
    opts = PlanOptions(rules=rules)
    new = plan({"ft/a.jsonl": LocalFile("ft/a.jsonl", 3, 1, 1)}, {}, None, now=NOW, options=opts)
    assert (new.actions[0].purpose, new.actions[0].expires_after) == ("fine-tune", 7200)
    tracked = {"ft/a.jsonl": replace(row(), path="ft/a.jsonl")}
    local = {"ft/a.jsonl": LocalFile("ft/a.jsonl", 3, 100, 1)}
    moved = plan(local, tracked, None, now=NOW, options=opts)
    assert moved.actions[0].kind is A.REPLACE and "purpose" in moved.actions[0].reason


def many(n: int, present: int) -> tuple[dict[str, LocalFile], dict[str, LedgerRow]]:
    ledger = {f"f{i:03}": replace(row(), path=f"f{i:03}", file_id=f"file-{i}") for i in range(n)}
    local = {p: LocalFile(p, 3, 100, 1) for p in list(ledger)[:present]}
    return local, ledger


@pytest.mark.parametrize(
    ("tracked", "present", "max_delete", "refused"),
    [
        (20, 9, None, True),  # 11 of 20 would go: more than half and more than 10
        (10, 0, None, False),  # all 10 go: not more than 10
        (22, 11, None, False),  # exactly half: allowed
        (100, 50, None, False),  # half of 100
        (100, 49, None, True),
        (10, 6, 3, True),  # explicit limit: 4 > 3
        (10, 7, 3, False),
        (50, 0, 50, False),  # explicit override allows deleting everything
    ],
)
def test_mass_delete_guard(
    tracked: int, present: int, max_delete: int | None, refused: bool
) -> None:
    """Refuse more than --max-delete, or by default more than half when more than 10 go."""
    local, ledger = many(tracked, present)
    result = plan(local, ledger, None, now=NOW, options=PlanOptions(max_delete=max_delete))
    deletes = tracked - present
    if refused:
        assert result.of_kind(A.DELETE) == [] and len(result.refused) == deletes
        assert f"--max-delete {deletes}" in (result.refusal or "")
    else:
        assert len(result.of_kind(A.DELETE)) == deletes and result.refusal is None


def test_guard_uses_tracked_total_for_partial_plans() -> None:
    """A plan over some paths measures deletes against every tracked file."""
    local, ledger = many(12, 0)
    partial = plan(local, ledger, None, now=NOW, options=PlanOptions(tracked_total=1000))
    assert partial.refusal is None and len(partial.of_kind(A.DELETE)) == 12


def test_refused_deletes_keep_uploads() -> None:
    """A refused mass delete still uploads new files."""
    local, ledger = many(20, 0)
    local["new.txt"] = LocalFile("new.txt", 1, 1, 1)
    result = plan(local, ledger, None, now=NOW, options=PlanOptions())
    assert [a.kind for a in result.actions] == [A.UPLOAD] and result.refusal


def test_actions_are_ordered_uploads_first_deletes_last() -> None:
    """Uploads and replaces come first, then ledger-only fixes, then deletes."""
    ledger = {
        "a-del": replace(row(), path="a-del", file_id="file-d"),
        "b-forget": replace(row(), path="b-forget", file_id=None),
        "c-replace": replace(row(), path="c-replace", file_id="file-r"),
    }
    local = {"c-replace": LocalFile("c-replace", 9, 1, 1), "d-new": LocalFile("d-new", 1, 1, 1)}
    result = plan(local, ledger, None, now=NOW, options=PlanOptions())
    assert [(a.kind, a.path) for a in result.actions] == [
        (A.REPLACE, "c-replace"),
        (A.UPLOAD, "d-new"),
        (A.FORGET, "b-forget"),
        (A.DELETE, "a-del"),
    ]
    assert result.skip_counts() == {}


def test_retry_waiting_tries_a_backed_off_file_now_but_not_a_permanent_failure() -> None:
    """A one-shot sync (retry_waiting) retries content in backoff, never a permanent failure."""
    waiting = failed("retryable", next_attempt_at=NOW + 600)
    local = {"a.txt": lf(size=4, mtime=200)}
    options = PlanOptions(retry_waiting=True)
    retried = plan(local, {"a.txt": waiting}, None, now=NOW, options=options)
    assert [a.kind for a in retried.actions] == [A.REPLACE]
    refused = plan(local, {"a.txt": failed("permanent")}, None, now=NOW, options=options)
    assert refused.actions == () and refused.skipped == (("a.txt", S.FAILED),)


def test_retry_failed_tries_a_permanent_failure_of_unchanged_content() -> None:
    """`sync --retry-failed` plans an upload for content that failed for good."""
    local = {"a.txt": lf(size=4, mtime=200)}
    options = PlanOptions(retry_failed=True)
    retried = plan(local, {"a.txt": failed("permanent")}, None, now=NOW, options=options)
    assert [a.kind for a in retried.actions] == [A.REPLACE] and retried.skipped == ()
