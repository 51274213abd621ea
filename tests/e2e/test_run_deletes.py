"""`syncd run` and the mass-delete guard: a mass delete spread over several passes is
refused, and `syncd approve-deletes` lets the refused deletes through while it runs."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

from serverproc import ServerProcess
from test_run_support import (
    DaemonProcess,
    Messages,
    open_notify_socket,
    remote_names,
    run_command,
    wait_for,
    write,
)


def status_of(folder: Path, state: Path) -> dict[str, object]:
    code, stdout, stderr = run_command("status", folder, "--state", state, "--json")
    assert code == 0, stderr
    data: dict[str, object] = json.loads(stdout)
    return data


def test_mass_delete_spread_over_passes_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    """15 of 24 files deleted as 7 and then 8 (partial passes, each below the guard): the
    guard counts the earlier deletes and refuses before more than half are gone."""
    folder, state = tmp_path / "data", tmp_path / "state"
    for n in range(24):
        write(folder, f"f{n:02}.txt", f"file {n}")
    with DaemonProcess(server, folder, state) as daemon:
        daemon.start_ready()
        for n in range(7):
            (folder / f"f{n:02}.txt").unlink()
        wait_for(lambda: len(remote_names(server)) == 17, what="the first 7 deleted")
        for n in range(7, 15):
            (folder / f"f{n:02}.txt").unlink()
        event = daemon.wait_event("deletes_refused")
        assert "deleted in the last 5 min" in event["reason"]
        assert "of 24 mirrored files (more than half" in event["reason"]
        left = len(remote_names(server))
        assert 12 <= left <= 17  # some of the 8 may go first; never more than half in all
        assert daemon.stop() == 0


def test_refused_deletes_are_approved_while_the_daemon_runs(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A refused mass delete: `syncd status` names the command; `syncd approve-deletes`
    (the daemon running) lets exactly those deletes through, said in the log and STATUS=;
    a later mass delete is refused again."""
    folder, state = tmp_path / "data", tmp_path / "state"
    for n in range(30):  # 16 in gone/, 11 in keep/a/, 3 in keep/b/
        sub = "gone" if n < 16 else "keep/a" if n < 27 else "keep/b"
        write(folder, f"{sub}/f{n:02}.txt", f"file {n}")
    with (
        open_notify_socket() as (sock, path),
        DaemonProcess(server, folder, state, env={"NOTIFY_SOCKET": path}) as daemon,
    ):
        messages = Messages(sock)
        daemon.start_ready()
        shutil.rmtree(folder / "gone")  # 16 of 30 (in one pass or a few)
        daemon.wait_event("deletes_refused")
        messages.wait_for(lambda m: any("STATUS=refusing to delete" in x for x in m), "refusal")
        refusal = wait_for(lambda: status_of(folder, state)["refusal"], what="status refusal")
        assert isinstance(refusal, dict)
        held = refusal["deletes"]
        # The rmtree may reach the daemon in pieces: a first pass can delete up to 15 (the
        # guard counts the window's deletes), so at least 1 and at most 16 are held.
        assert 1 <= held <= 16 and len(remote_names(server)) == 14 + held
        command = shlex.split(refusal["approve"])
        assert command[:2] == ["syncd", "approve-deletes"]
        assert command[-2:] == ["--max", str(held)]
        code, _, stderr = run_command(*command[1:])
        assert code == 0, stderr
        assert f"approved {held} deletes" in stderr
        approved = daemon.wait_event("deletes_approved")
        assert approved["deletes"] == held
        daemon.wait_event("approved_deletes_applied")
        wait_for(lambda: len(remote_names(server)) == 14, what="the approved deletes")
        messages.wait_for(
            lambda m: any(f"STATUS=deleting {held} refused files, approved by" in x for x in m),
            "STATUS= saying the approved deletes go",
        )
        wait_for(lambda: status_of(folder, state)["refusal"] is None, what="refusal settled")
        shutil.rmtree(folder / "keep" / "a")  # 11 of the 14 left: not covered
        second = daemon.wait_event("deletes_refused", lambda e: e["reason"] != approved)
        assert "refusing to delete" in second["reason"]
        wait_for(lambda: status_of(folder, state)["refusal"], what="the new refusal")
        assert len(remote_names(server)) >= 7  # never more than half of the 14
        assert daemon.stop() == 0


def test_approving_with_nothing_refused_says_so(server: ServerProcess, tmp_path: Path) -> None:
    """approve-deletes for a folder with nothing refused: one line, exit 1; no ledger:
    exit 2."""
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "a.txt", "a")
    code, _, stderr = run_command("approve-deletes", folder, "--state", state)
    assert code == 2 and stderr.startswith("syncd: no ledger for") and len(stderr.splitlines()) == 1
    with DaemonProcess(server, folder, state).start_ready() as daemon:
        code, _, stderr = run_command("approve-deletes", folder, "--state", state)
        assert code == 1
        assert stderr.strip() == f"syncd: {folder}: no refused deletes to approve (the " + (
            "mass-delete guard holds nothing back)"
        )
        assert daemon.stop() == 0


def test_approval_lists_the_paths_escaped(server: ServerProcess, tmp_path: Path) -> None:
    """The paths approve-deletes lists are local file names: names holding terminal
    escapes (clear screen, a window title, a bidi override) are listed escaped."""
    folder, state = tmp_path / "data", tmp_path / "state"
    hostile, shown = "\x1b[2J\x1b]0;owned\x07\u202e", "\\x1b[2J\\x1b]0;owned\\x07\\u202e"
    for n in range(20):
        write(folder, f"{'gone' if n < 12 else 'keep'}/f{n:02}{hostile}.txt", f"file {n}")
    with DaemonProcess(server, folder, state).start_ready() as daemon:
        shutil.rmtree(folder / "gone")
        daemon.wait_event("deletes_refused")
        refusal = wait_for(lambda: status_of(folder, state)["refusal"], what="status refusal")
        assert isinstance(refusal, dict)
        code, _, stderr = run_command("approve-deletes", folder, "--state", state)
        assert code == 0, stderr
        listed = [line for line in stderr.splitlines() if line.startswith("  ")]
        assert len(listed) == refusal["deletes"], stderr
        assert all(line.startswith("  gone/f") and line.endswith(f"{shown}.txt") for line in listed)
        assert not any(c in stderr for c in "\x1b\x07\u202e"), stderr
        assert daemon.stop() == 0


def test_approval_over_max_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    """--max below the refused count approves nothing (exit 1, one line)."""
    folder, state = tmp_path / "data", tmp_path / "state"
    for n in range(20):
        write(folder, f"{'gone' if n < 12 else 'keep'}/f{n:02}.txt", f"file {n}")
    with DaemonProcess(server, folder, state).start_ready() as daemon:
        shutil.rmtree(folder / "gone")
        daemon.wait_event("deletes_refused")
        refusal = wait_for(lambda: status_of(folder, state)["refusal"], what="status refusal")
        assert isinstance(refusal, dict)
        # All 12, or the rest of them if up to 10 (half of 20) went in a first pass.
        held = refusal["deletes"]
        assert isinstance(held, int) and 2 <= held <= 12
        below = str(held - 1)
        code, _, stderr = run_command("approve-deletes", folder, "--state", state, "--max", below)
        assert code == 1
        assert f"would delete {held} files, more than --max {below}: nothing approved" in stderr
        assert len(stderr.splitlines()) == 1
        assert len(remote_names(server)) == 8 + held
        assert daemon.stop() == 0


def test_files_put_back_withdraw_the_refusal(server: ServerProcess, tmp_path: Path) -> None:
    """The refused files put back: the refusal is withdrawn at the next pass (nothing to
    approve any more), not at the next full rescan."""
    folder, state = tmp_path / "data", tmp_path / "state"
    for n in range(20):
        write(folder, f"{'gone' if n < 12 else 'keep'}/f{n:02}.txt", f"file {n}")
    with DaemonProcess(server, folder, state).start_ready() as daemon:
        saved = {p: p.read_bytes() for p in (folder / "gone").iterdir()}
        shutil.rmtree(folder / "gone")
        daemon.wait_event("deletes_refused")
        wait_for(lambda: status_of(folder, state)["refusal"], what="status refusal")
        for path, content in saved.items():
            write(folder, f"gone/{path.name}", content)
        wait_for(lambda: status_of(folder, state)["refusal"] is None, what="refusal withdrawn")
        code, _, stderr = run_command("approve-deletes", folder, "--state", state)
        assert code == 1 and "no refused deletes to approve" in stderr
        # Any that went before the guard tripped are uploaded again; the rest never left.
        wait_for(lambda: len(remote_names(server)) == 20, what="all 20 remote again")
        assert daemon.stop() == 0
