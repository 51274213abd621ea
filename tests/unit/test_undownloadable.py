"""Which files the remote side gives back, and the summaries pull and verify print."""

from __future__ import annotations

import io

import pytest

from syncd.api import DOWNLOADABLE_PURPOSES, UPLOAD_PURPOSES, may_download
from syncd.errors import PermanentError
from syncd.restore.undownloadable import Undownloadable, pull_summary, verify_note
from syncd.testing import MemoryRemote


@pytest.mark.parametrize("purpose", UPLOAD_PURPOSES)
def test_may_download_follows_the_one_list(purpose: str) -> None:
    """Exactly the purposes in DOWNLOADABLE_PURPOSES may be asked for; None (not
    recorded) may be tried."""
    assert may_download(purpose) is (purpose in DOWNLOADABLE_PURPOSES)
    assert may_download(None)


def test_memory_remote_refuses_like_the_api() -> None:
    """MemoryRemote answers a user_data download with the API's 400; batch downloads;
    allow_all_downloads serves every purpose."""
    remote = MemoryRemote()
    user = remote.add("a.txt", 1, 0, "user_data", b"a")
    batch = remote.add("b.jsonl", 1, 0, "batch", b"b")
    with pytest.raises(PermanentError) as refused:
        remote.download(user, io.BytesIO())
    assert refused.value.status == 400
    assert "Not allowed to download files of purpose: user_data" in str(refused.value)
    assert remote.download(batch, io.BytesIO()) == 1
    lenient = MemoryRemote(allow_all_downloads=True)
    assert lenient.download(lenient.add("a.txt", 1, 0, "user_data", b"a"), io.BytesIO()) == 1


def test_pull_summary_groups_by_purpose_in_three_lines() -> None:
    """Files decided from their purpose and files the server refused are counted apart,
    by purpose, followed by one line on what to do; no path appears."""
    files = [
        Undownloadable("a", "user_data"),
        Undownloadable("b", "user_data"),
        Undownloadable("c", "fine-tune"),
        Undownloadable("d", "batch", "HTTP 400: download file-d: no"),
    ]
    lines = pull_summary(files)
    assert lines[0].startswith("not restored: 3 files (fine-tune: 1, user_data: 2): the API")
    assert lines[1] == (
        "not restored: 1 file (batch: 1): the server refused to download them "
        "(HTTP 400: download file-d: no)"
    )
    assert "mirror, not a backup" in lines[2]
    assert len(lines) == 3
    assert pull_summary([]) == []


def test_verify_note_says_how_many_and_why() -> None:
    """The verify clause counts the files checked by size only and names the purposes."""
    note = verify_note([Undownloadable("a", "user_data"), Undownloadable("b", "evals")])
    assert note == (
        "2 files checked by size, name, purpose and expiry only, not by content: the API "
        "does not allow downloading files of purpose evals, user_data"
    )
    assert verify_note([]) == ""
