"""A 100 MiB upload and download through HttpFilesRemote with flat client memory."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from serverproc import ServerProcess, clean_env

MIB = 1024 * 1024
SIZE = 100 * MIB
# Far below the file size: proves the content is streamed, not held in memory.
MAX_GROWTH = 24 * MIB

# Runs in a fresh interpreter so that the test runner's own memory does not blur the
# measurement. Peak RSS (VmHWM) is reset after warming up where the kernel allows it.
PROBE = r"""
import json, os, re, sys
from pathlib import Path
from syncd.remote.files_http import HttpFilesRemote
from syncd.remote.settings import RemoteSettings

def status(field):
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024

source, target, warm = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
settings = RemoteSettings(base_url=os.environ["PROBE_BASE_URL"], api_key=os.environ["PROBE_KEY"])
with HttpFilesRemote(settings) as remote:
    small = remote.upload(warm, "warm.bin", "vision")  # imports, pools, first buffers
    with open(target, "wb") as out:
        remote.download(small.id, out)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    baseline = status("VmHWM")
    uploaded = remote.upload(source, "big.bin", "vision")  # a purpose that downloads
    after_upload = status("VmHWM")
    with open(target, "wb") as out:
        written = remote.download(uploaded.id, out)
    after_download = status("VmHWM")
print(json.dumps({"baseline": baseline, "after_upload": after_upload,
                  "after_download": after_download, "bytes": uploaded.bytes,
                  "written": written}))
"""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
def test_100_mib_upload_and_download_keep_client_memory_flat(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Peak RSS of the client grows by far less than the 100 MiB it uploads and downloads."""
    source, target, warm = tmp_path / "big.bin", tmp_path / "back.bin", tmp_path / "warm.bin"
    with open(source, "wb") as file:
        for _ in range(SIZE // MIB):
            file.write(os.urandom(MIB))
    warm.write_bytes(os.urandom(MIB))
    env = clean_env({"PROBE_BASE_URL": server.base_url, "PROBE_KEY": server.client_key})
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(source), str(target), str(warm)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result["bytes"] == result["written"] == SIZE
    assert sha256_of(target) == sha256_of(source)
    assert result["after_upload"] - result["baseline"] < MAX_GROWTH, result
    assert result["after_download"] - result["baseline"] < MAX_GROWTH, result
