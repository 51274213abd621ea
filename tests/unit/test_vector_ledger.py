"""The ledger's vector part: a replaced version a store may be serving keeps its File; a
retired version's row goes in the same transaction that opens its File's delete intent;
the owner tag is made once and kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.api import RemoteFile
from syncd.local.fingerprint import Fingerprint
from syncd.state.ledger import IntentKind, Ledger
from syncd.state.vector_ledger import AfterDetach, Attachment, AttachState, VectorLedger

FP = Fingerprint(size=5, mtime_ns=1, inode=2, sha256="aa" * 32)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.open(tmp_path / "l.db")
    yield led
    led.close()


def uploaded(ledger: Ledger, path: str, file_id: str) -> list[str]:
    """Upload ``path`` as ``file_id`` (a replace when it was tracked); the delete intents'
    file ids that the commit opened."""
    intent = ledger.begin_upload(
        path, FP, filename=path, purpose="user_data", expires_after=None, replaces=None, now=1.0
    )
    remote = RemoteFile(file_id, path, 5, 1, "user_data")
    return [d.file_id or "" for d in ledger.complete_upload(intent, remote, stale=False, now=2.0)]


@pytest.mark.parametrize(
    ("state", "kept"),
    [
        (AttachState.COMPLETED, True),
        (AttachState.IN_PROGRESS, True),
        (AttachState.ATTACHING, True),
        (AttachState.FAILED, False),
        (AttachState.PENDING, False),
        (AttachState.DETACHING, False),
        (AttachState.FOREIGN, False),
    ],
)
def test_a_replaced_version_serving_a_store_keeps_its_file(
    ledger: Ledger, state: AttachState, kept: bool
) -> None:
    """complete_upload opens no delete intent for an old version a store may be serving
    (attaching, in progress, completed); for any other it does, as without a store."""
    uploaded(ledger, "a.md", "f-old")
    VectorLedger(ledger).adopt(Attachment("vs_1", "f-old", "a.md", state))
    deletes = uploaded(ledger, "a.md", "f-new")
    assert deletes == ([] if kept else ["f-old"])
    assert "f-old" in ledger.known_file_ids()


def test_retiring_opens_the_delete_intent_in_the_same_transaction(ledger: Ledger) -> None:
    """finish_detach of a retired version drops its row and opens its File's delete
    intent; a version something still refers to gets none."""
    vl = VectorLedger(ledger)
    uploaded(ledger, "a.md", "f-new")
    vl.adopt(Attachment("vs_1", "f-old", "a.md", AttachState.DETACHING, after_detach="retire"))
    vl.adopt(Attachment("vs_1", "f-new", "a.md", AttachState.DETACHING, after_detach="retire"))
    intent = vl.finish_detach(vl.attachments()["vs_1", "f-old"], now=3.0)
    assert intent is not None and intent.kind is IntentKind.DELETE and intent.file_id == "f-old"
    assert ("vs_1", "f-old") not in vl.attachments()
    assert vl.finish_detach(vl.attachments()["vs_1", "f-new"], now=3.0) is None  # tracked


def test_a_retry_detach_makes_the_row_pending_again(ledger: Ledger) -> None:
    """A detach for a retry keeps the row (and its attempts), pending."""
    vl = VectorLedger(ledger)
    vl.adopt(Attachment("vs_1", "f", "a.md", AttachState.FAILED, attempts=3))
    vl.begin_detach("vs_1", "f", AfterDetach.REATTACH, now=1.0)
    row = vl.attachments()["vs_1", "f"]
    assert row.state is AttachState.DETACHING
    assert vl.finish_detach(row, now=2.0) is None
    again = vl.attachments()["vs_1", "f"]
    assert again.state is AttachState.PENDING and again.attempts == 3


def test_the_owner_tag_is_made_once(tmp_path: Path) -> None:
    """owner_id is random, kept in the ledger across opens, and differs between ledgers."""
    with Ledger.open(tmp_path / "a.db") as a, Ledger.open(tmp_path / "b.db") as b:
        tag = VectorLedger(a).owner_id()
        assert tag.startswith("syncd-") and len(tag) > 30
        assert VectorLedger(a).owner_id() == tag
        assert VectorLedger(b).owner_id() != tag
        assert VectorLedger(b).known_owner() is not None
    with Ledger.open(tmp_path / "a.db") as again:
        assert VectorLedger(again).owner_id() == tag
