"""`syncd run --config` with several [[mirror]] tables: the mirrors run concurrently."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from serverproc import ServerProcess
from test_run_support import DaemonProcess, remote_names, wait_for, write


def two_mirror_config(tmp_path: Path, *, slow_extra: str = "") -> tuple[Path, Path, Path]:
    """A config mirroring ``slow`` (large files in parts) and ``quick``; returns paths."""
    slow, quick = tmp_path / "slow", tmp_path / "quick"
    slow.mkdir()
    quick.mkdir()
    config = tmp_path / "syncd.toml"
    config.write_text(
        f"""
[[mirror]]
folder = "{slow}"
purpose = "assistants"
multipart_threshold = 4096
part_size = 4096
{slow_extra}

[[mirror]]
folder = "{quick}"
"""
    )
    return config, slow, quick


def test_a_slow_upload_in_one_folder_does_not_delay_another(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """While one mirror's large upload crawls (every part 1.5 s), a small file dropped into
    the other mirror is uploaded within its debounce + a few seconds, long before."""
    server = server_factory(faults={"latency_ms": 1500, "routes": ["upload_part"]})
    config, slow, quick = two_mirror_config(tmp_path)
    with DaemonProcess(server, None, tmp_path / "state", "--config", str(config)) as daemon:
        daemon.start_ready()
        write(slow, "big.bin", b"x" * 4096 * 24)  # 24 parts, 4 at a time: >= 9 s
        wait_for(lambda: server.stats()["counts"].get("upload_part", 0) >= 1, what="parts")
        started = time.monotonic()
        write(quick, "small.txt", "small")
        wait_for(lambda: "small.txt" in remote_names(server), what="small.txt uploaded")
        latency = time.monotonic() - started
        assert "big.bin" not in remote_names(server), "the large upload ended first"
        assert latency < 6.0, f"small.txt took {latency:.1f} s"
        wait_for(lambda: "big.bin" in remote_names(server), deadline=60, what="big.bin")
        assert daemon.stop() == 0


def test_reload_rebuilds_a_changed_mirror_after_its_pass(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A SIGHUP that changes one mirror's settings while that mirror uploads: the pass in
    progress ends, the mirror is rebuilt with the new settings, the other goes on."""
    import signal

    server = server_factory(faults={"latency_ms": 800, "routes": ["upload_part"]})
    config, slow, quick = two_mirror_config(tmp_path)
    with DaemonProcess(server, None, tmp_path / "state", "--config", str(config)) as daemon:
        daemon.start_ready()
        write(slow, "big.bin", b"y" * 4096 * 8)
        wait_for(lambda: server.stats()["counts"].get("upload_part", 0) >= 1, what="parts")
        config.write_text(config.read_text().replace("part_size = 4096", "part_size = 8192"))
        daemon.send(signal.SIGHUP)
        daemon.wait_event("reloaded")
        write(quick, "during.txt", "during the reload")
        wait_for(lambda: "during.txt" in remote_names(server), what="the other mirror")
        daemon.wait_event("mirror_changed")
        wait_for(lambda: "big.bin" in remote_names(server), deadline=60, what="big.bin")
        write(slow, "after.txt", "after")
        wait_for(lambda: "after.txt" in remote_names(server), what="the rebuilt mirror")
        assert daemon.events("mirror_step_failed") == []
        assert daemon.stop() == 0
