"""``RemoteFile.from_json`` is the one check of a server's file object: strict and cheap."""

from __future__ import annotations

from typing import Any

import pytest

from syncd.api import MAX_REMOTE_BYTES, MAX_TIMESTAMP, RemoteFile, check_file_id

GOOD: dict[str, Any] = {
    "id": "file-abc123",
    "object": "file",
    "bytes": 5,
    "created_at": 1_700_000_000,
    "filename": "dir/a.txt",
    "purpose": "user_data",
    "status": "processed",
    "expires_at": None,
}


def test_a_good_file_object_is_read_as_it_is() -> None:
    """Every field of a well-formed object arrives unchanged."""
    remote = RemoteFile.from_json({**GOOD, "expires_at": 1_800_000_000})
    assert remote == RemoteFile(
        "file-abc123", "dir/a.txt", 5, 1_700_000_000, "user_data", "processed", 1_800_000_000
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": None}, "null, not a string"),
        ({"id": 7}, "an integer, not a string"),
        ({"id": ""}, "empty"),
        ({"id": "."}, "not one safe path segment"),
        ({"id": ".."}, "not one safe path segment"),
        ({"id": "a/b"}, "not one safe path segment"),
        ({"id": "a\\b"}, "not one safe path segment"),
        ({"id": "file-\x00"}, "not one safe path segment"),
        ({"id": "file-\x1b[2J"}, "not one safe path segment"),
        ({"id": "file-\u202eexe"}, "not one safe path segment"),
        ({"id": "file-\ud800"}, "not one safe path segment"),
        ({"id": "f" * 257}, "too long"),
        ({"bytes": "abc"}, "'bytes' is a string"),
        ({"bytes": True}, "'bytes' is a boolean"),
        ({"bytes": 5.0}, "'bytes' is a number with a fraction"),
        ({"bytes": float("inf")}, "'bytes' is a number with a fraction"),  # JSON's 1e400
        ({"bytes": -1}, "'bytes' is out of range"),
        ({"bytes": MAX_REMOTE_BYTES + 1}, "'bytes' is out of range"),
        ({"created_at": "2024-01-01"}, "'created_at' is a string"),
        ({"created_at": MAX_TIMESTAMP + 1}, "'created_at' is out of range"),
        ({"expires_at": "2024-01-01T00:00:00Z"}, "'expires_at' is a string"),
        ({"expires_at": 1.5}, "'expires_at' is a number"),
        ({"filename": 3}, "'filename' is an integer"),
        ({"purpose": ["x"]}, "'purpose' is a list"),
        ({"status": {}}, "'status' is an object"),
    ],
)
def test_a_bad_field_is_a_value_error_naming_it(change: dict[str, Any], reason: str) -> None:
    """Each wrong type or range raises ValueError saying which field and why."""
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        RemoteFile.from_json({**GOOD, **change})


@pytest.mark.parametrize("entry", [42, "file-a", None, [GOOD], True])
def test_an_entry_that_is_not_an_object_is_refused(entry: Any) -> None:
    """A listing entry that is not an object is a ValueError, not a crash."""
    with pytest.raises(ValueError, match="not an object"):
        RemoteFile.from_json(entry)


def test_missing_and_null_optional_fields_keep_their_defaults() -> None:
    """As before: no bytes/created_at count as 0, no status as processed, no names empty."""
    remote = RemoteFile.from_json({"id": "file-a", "bytes": None, "status": ""})
    assert remote == RemoteFile("file-a", "", 0, 0, "", "processed", None)


def test_the_message_never_carries_a_huge_or_hostile_value() -> None:
    """A 10,000-character string in a number field is named, not quoted."""
    with pytest.raises(ValueError) as info:
        RemoteFile.from_json({**GOOD, "bytes": "9" * 10_000})
    assert len(str(info.value)) < 200


def test_check_file_id_accepts_the_ids_real_servers_hand_out() -> None:
    """OpenAI's, Azure's and odd but harmless ids (spaces, '%', non-ASCII) pass."""
    for file_id in ("file-abc123XYZ", "assistant-Q1w2E3", "file-a b%20c", "fichier-é", "x.y"):
        assert check_file_id(file_id) == file_id
