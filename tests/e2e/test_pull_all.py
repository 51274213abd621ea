"""`syncd pull DEST --all`: every remote file under its untrusted name, never outside DEST."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from serverproc import ServerProcess
from synccli import list_remote, local_files, run_syncd, upload_directly, write

BOUNDARY = "syncd-test-boundary"


# These tests are about names and DEST, so their files have a purpose the API serves
# (vision takes any bytes); the strict server refuses user_data downloads.
PURPOSE = "vision"


def upload_raw_name(
    server: ServerProcess, name: bytes, content: bytes, purpose: str = PURPOSE
) -> str:
    """Upload with ``name`` put into Content-Disposition byte for byte (httpx and the SDK
    would escape control characters; a hostile client need not). Returns the id."""
    body = b"".join(
        [
            f"--{BOUNDARY}\r\n".encode(),
            b'Content-Disposition: form-data; name="purpose"\r\n\r\n',
            purpose.encode() + b"\r\n",
            f"--{BOUNDARY}\r\n".encode(),
            b'Content-Disposition: form-data; name="file"; filename="' + name + b'"\r\n',
            b"Content-Type: application/octet-stream\r\n\r\n",
            content + b"\r\n",
            f"--{BOUNDARY}--\r\n".encode(),
        ]
    )
    response = httpx.post(
        f"{server.base_url}/files",
        content=body,
        headers={**server.headers(), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    response.raise_for_status()
    file_id: str = response.json()["id"]
    return file_id


def pull_all(server: ServerProcess, dest: Path, *args: str | Path):
    result = run_syncd(server, "pull", dest, "--all", "--state", dest.parents[2] / "state", *args)
    print(result.stderr)  # shown when a test fails
    return result


def tree(root: Path) -> set[str]:
    """Every path below ``root`` (files, folders and links), relative."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """DEST two levels below an otherwise empty folder, so '../..' lands somewhere we watch."""
    dest = tmp_path / "sandbox" / "inner" / "dest"
    dest.mkdir(parents=True)
    return dest


def test_hostile_names_never_escape_dest(server: ServerProcess, sandbox: Path) -> None:
    """Traversal, absolute, empty, control-character, over-long and duplicate names all
    land inside DEST as regular files, one per remote file, each renaming said in a line;
    nothing appears beside DEST or at the absolute path named."""
    absolute_target = Path(f"/tmp/syncd-escape-{uuid.uuid4().hex}/x")
    names = [
        b"../../x",
        b"../../../../../../../../tmp/escaped",
        str(absolute_target).encode(),
        b"..",
        b".",
        b"",
        b"a/../../b",
        b"..\\..\\backslash.txt",
        b"n" * 300,
        b"d" * 300 + b"/inner.txt",
        b"ctl\x01\x1b[31mred\x7f",
        b"nul\x00byte",
        b"line\nbreak",
        b"dup.txt",
        b"dup.txt",
        "\u202eexe.txt".encode(),
    ]
    ids = {
        upload_raw_name(server, name, f"content {i}".encode()): i for i, name in enumerate(names)
    }
    result = pull_all(server, sandbox)
    assert result.returncode == 0
    assert tree(sandbox.parent.parent) == {"inner", "inner/dest"} | {
        f"inner/dest/{p}" for p in tree(sandbox)
    }
    assert not absolute_target.exists()
    assert not absolute_target.parent.exists()
    assert not Path("/tmp/escaped").exists()
    files = local_files(sandbox)
    assert len(files) == len(names)
    assert sorted(files.values()) == sorted(f"content {i}".encode() for i in ids.values())
    for path in tree(sandbox):
        assert not (sandbox / path).is_symlink()
        assert all(len(part.encode()) <= 255 for part in path.split("/"))
        assert not any(ord(c) < 32 or c == "\x7f" for c in path)
    assert files["x"] in (b"content 0",)
    assert files["dup.txt"] == b"content 14"  # the newer of the two keeps the plain name
    assert result.stderr.count("syncd: renamed:") >= len(names) - 1
    assert "\x1b" not in result.stderr


def test_second_pull_all_downloads_nothing(server: ServerProcess, sandbox: Path) -> None:
    """Files already pulled (same size and mtime) are not downloaded again."""
    upload_directly(server, "one.txt", b"one", PURPOSE)
    upload_directly(server, "dir/two.txt", b"two", PURPOSE)
    first = pull_all(server, sandbox)
    assert first.returncode == 0
    assert local_files(sandbox) == {"one.txt": b"one", "dir/two.txt": b"two"}
    server.reset_stats()
    second = pull_all(server, sandbox)
    assert second.returncode == 0
    assert server.stats()["counts"].get("content", 0) == 0
    assert "2 already there" in second.stderr


def test_existing_different_file_is_kept_and_remote_gets_id_suffix(
    server: ServerProcess, sandbox: Path
) -> None:
    """A user's own file at a remote file's name stays; the remote one lands beside it."""
    file_id = upload_directly(server, "notes.txt", b"remote version", PURPOSE)
    write(sandbox, "notes.txt", "my local notes")
    result = pull_all(server, sandbox)
    assert result.returncode == 0
    assert (sandbox / "notes.txt").read_text() == "my local notes"
    assert (sandbox / f"notes ({file_id}).txt").read_bytes() == b"remote version"


def test_symlink_planted_in_dest_is_not_followed(
    server: ServerProcess, sandbox: Path, tmp_path: Path
) -> None:
    """A link inside DEST on a remote file's way is not followed: exit 1, named, and the
    folder it points to stays empty."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (sandbox / "docs").symlink_to(outside)
    upload_directly(server, "docs/secret.txt", b"s", PURPOSE)
    upload_directly(server, "fine.txt", b"f", PURPOSE)
    result = pull_all(server, sandbox)
    assert result.returncode == 1
    assert "docs in the destination is a symbolic link; not followed" in result.stderr
    assert list(outside.iterdir()) == []
    assert (sandbox / "fine.txt").read_bytes() == b"f"


def test_purpose_filter(server: ServerProcess, sandbox: Path) -> None:
    """--purpose pulls only that purpose's files."""
    line = b'{"custom_id": "1", "method": "POST", "url": "/v1/embeddings", "body": {}}\n'
    upload_directly(server, "image.png", b"u", PURPOSE)
    upload_raw_name(server, b"batch.jsonl", line, purpose="batch")
    result = pull_all(server, sandbox, "--purpose", "batch")
    assert result.returncode == 0
    assert local_files(sandbox) == {"batch.jsonl": line}
    assert len(list_remote(server)) == 2
