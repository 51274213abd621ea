"""HttpFilesRemote against a real `syncd serve` on loopback: the five calls and their contract."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from serverproc import ServerProcess

from syncd.api import wire_filename
from syncd.errors import FatalError, NotFoundError, PermanentError
from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.settings import RemoteSettings


def client(server: ServerProcess, *, key: str | None = None, **options: int) -> HttpFilesRemote:
    settings = RemoteSettings(
        base_url=server.base_url,
        api_key=key if key is not None else server.client_key,
        backoff_base=0.01,
        backoff_cap=0.05,
    )
    return HttpFilesRemote(settings, **options)  # type: ignore[arg-type]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_upload_retrieve_download_delete_round_trip(server: ServerProcess, tmp_path: Path) -> None:
    """An uploaded file comes back with its name, size and exact bytes, and can be deleted."""
    data = b"line one\nline two\n" * 100
    source = write(tmp_path / "folder" / "notes" / "a.txt", data)
    with client(server) as remote:
        uploaded = remote.upload(source, "notes/a.txt", "vision")  # one the API lets download
        assert uploaded.id.startswith("file-")
        assert (uploaded.filename, uploaded.bytes, uploaded.purpose) == (
            "notes/a.txt",
            len(data),
            "vision",
        )
        assert remote.retrieve(uploaded.id) == uploaded
        out = io.BytesIO()
        assert remote.download(uploaded.id, out) == len(data)
        assert out.getvalue() == data
        remote.delete(uploaded.id)
        with pytest.raises(NotFoundError):
            remote.retrieve(uploaded.id)


def test_filename_with_subfolders_and_unicode_is_sent_as_given(
    server: ServerProcess, tmp_path: Path
) -> None:
    """The relative path with / and non-ASCII letters arrives unchanged (raw UTF-8)."""
    source = write(tmp_path / "x.md", b"# hi\n")
    name = "Übersicht/größe ñ; a=b \\ c.md"
    with client(server) as remote:
        uploaded = remote.upload(source, name, "assistants")
        assert uploaded.filename == name == wire_filename(name)
        assert [f.filename for f in remote.list_files()] == [name]


def test_wire_filename_predicts_what_the_server_stores(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Quotes and control characters come back percent-encoded, as wire_filename says."""
    source = write(tmp_path / "x.txt", b"x")
    name = 'say "hi"\nnext\tline.txt'
    with client(server) as remote:
        uploaded = remote.upload(source, name, "user_data")
    assert uploaded.filename == wire_filename(name) == "say %22hi%22%0Anext%09line.txt"


def test_expires_after_is_sent(server: ServerProcess, tmp_path: Path) -> None:
    """expires_after_seconds becomes expires_at = created_at + seconds on the server."""
    source = write(tmp_path / "e.txt", b"soon gone")
    with client(server) as remote:
        uploaded = remote.upload(source, "e.txt", "user_data", expires_after_seconds=7200)
    assert uploaded.expires_at == uploaded.created_at + 7200


def test_list_pages_with_small_pages_return_each_file_once(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Page size 2 over 25 files: every file exactly once, 13 list requests, both orders."""
    with client(server, page_size=2) as remote:
        ids = []
        for n in range(25):
            source = write(tmp_path / f"f{n:02}.txt", f"file {n}".encode())
            ids.append(remote.upload(source, f"f{n:02}.txt", "user_data").id)
        server.reset_stats()
        listed = [f.id for f in remote.list_files()]
        assert sorted(listed) == sorted(ids)
        assert len(listed) == len(set(listed)) == 25
        assert server.stats()["counts"]["list"] == 13
        ascending = [f.filename for f in remote.list_files(order="asc")]
        assert ascending == sorted(ascending)
        assert [f.filename for f in remote.list_files(order="desc")] == ascending[::-1]


def test_list_filters_by_purpose(server: ServerProcess, tmp_path: Path) -> None:
    """list_files(purpose) returns only that purpose's files."""
    source = write(tmp_path / "d.jsonl", b'{"a": 1}\n')
    with client(server) as remote:
        remote.upload(source, "d.jsonl", "user_data")
        tuned = remote.upload(source, "d.jsonl", "fine-tune")
        assert [f.id for f in remote.list_files(purpose="fine-tune")] == [tuned.id]


def test_delete_of_a_missing_file_succeeds(server: ServerProcess, tmp_path: Path) -> None:
    """Deleting an id that does not exist (or twice) returns normally."""
    source = write(tmp_path / "g.txt", b"gone")
    with client(server) as remote:
        remote.delete("file-doesnotexist000000000000")
        uploaded = remote.upload(source, "g.txt", "user_data")
        remote.delete(uploaded.id)
        remote.delete(uploaded.id)
        assert list(remote.list_files()) == []


def test_download_into_a_file_and_of_a_missing_id(server: ServerProcess, tmp_path: Path) -> None:
    """download streams into a file or /dev/null; a missing id: NotFoundError, nothing written."""
    data = bytes(range(256)) * 4096
    source = write(tmp_path / "bin.dat", data)
    with client(server) as remote:
        uploaded = remote.upload(source, "bin.dat", "vision")  # downloadable
        with open(tmp_path / "copy.dat", "wb") as out:
            assert remote.download(uploaded.id, out) == len(data)
        assert (tmp_path / "copy.dat").read_bytes() == data
        with open(os.devnull, "wb") as sink:  # seekable but cannot be truncated
            assert remote.download(uploaded.id, sink) == len(data)
        empty = io.BytesIO()
        with pytest.raises(NotFoundError):
            remote.download("file-doesnotexist000000000000", empty)
        assert empty.getvalue() == b""


def test_bad_request_is_permanent_and_carries_the_server_message(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A 400 (fine-tune file that is not .jsonl) is PermanentError with the server's reason."""
    source = write(tmp_path / "plain.txt", b"not jsonl")
    with client(server) as remote, pytest.raises(PermanentError) as info:
        remote.upload(source, "plain.txt", "fine-tune")
    assert info.value.status == 400
    assert "jsonl" in str(info.value)
    assert server.stats()["counts"]["create"] == 1


def test_wrong_key_is_fatal_at_once_without_retry(server_factory: object, tmp_path: Path) -> None:
    """A 401 is FatalError after exactly one request; the message blames the key, not shows it."""
    srv = server_factory(api_key="sk-right-key-000000")  # type: ignore[operator]
    wrong = "sk-wrong-key-1234567890"
    source = write(tmp_path / "a.txt", b"a")
    with client(srv, key=wrong) as remote:
        with pytest.raises(FatalError) as info:
            remote.upload(source, "a.txt", "user_data")
        assert srv.stats()["unauthenticated"] == 1  # 401s are counted, not recorded
        with pytest.raises(FatalError):
            list(remote.list_files())
        assert srv.stats()["unauthenticated"] == 2
    assert info.value.status == 401
    assert "key" in str(info.value)
    assert wrong not in str(info.value)
