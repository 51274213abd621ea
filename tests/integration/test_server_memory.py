"""A 100 MiB file through `syncd serve` does not grow the server's memory with its size."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from serverproc import ServerProcess

MIB = 1024 * 1024
SIZE = 100 * MIB


def write_big_file(path: Path) -> str:
    """A SIZE-byte file of incompressible data; returns its sha256."""
    digest = hashlib.sha256()
    block = os.urandom(MIB)
    with open(path, "wb") as out:
        for i in range(SIZE // MIB):
            chunk = i.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


@pytest.mark.slow
def test_100_mib_upload_and_download_keep_server_memory_flat(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Server peak RSS grows by far less than the 100 MiB that go through it both ways."""
    source = tmp_path / "big.bin"
    expected = write_big_file(source)
    baseline = server.peak_rss_bytes()
    with open(source, "rb") as handle, httpx.Client(timeout=120) as http:
        response = http.post(
            f"{server.base_url}/files",
            headers=server.headers(),
            data={"purpose": "vision"},  # a purpose the real API lets one download
            files={"file": ("big.bin", handle)},
        )
        assert response.status_code == 200, response.text
        file_id = response.json()["id"]
        assert response.json()["bytes"] == SIZE
        after_upload = server.peak_rss_bytes()
        digest = hashlib.sha256()
        with http.stream(
            "GET", f"{server.base_url}/files/{file_id}/content", headers=server.headers()
        ) as download:
            assert download.status_code == 200
            for chunk in download.iter_bytes():
                digest.update(chunk)
    assert digest.hexdigest() == expected
    after_download = server.peak_rss_bytes()
    assert after_upload - baseline < 20 * MIB, (baseline, after_upload)
    assert after_download - baseline < 20 * MIB, (baseline, after_download)
