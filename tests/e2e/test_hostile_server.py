"""`syncd sync`, `run`, `ls` and `pull` against a server that misbehaves on purpose
(``tests/oddserver.py``, one mode per misbehaviour), and against hostile local files.

Every command here must end within a stated time (``LIMIT``), with one clear ``syncd:``
line, no traceback, a peak memory (max RSS of the process) under ``MEMORY_MIB``, and
no request to a URL a Files API client must not send (``wrong_requests``). For
comparison: before these bounds, an endless listing took 1.5 GB in 8 s and then
crashed, a trickle and fresh cursors never ended, a 5-byte file filled the disk, and a
malformed entry exited 70 with a traceback.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ServerFactory
from oddserver import OddServer, forwarding, gzip_bomb
from serverproc import ServerProcess
from synccli import Measured, peak_rss_mib, remote_files, run_measured, run_syncd, write
from test_run_support import DaemonProcess
from vectorstore import write_config

OddFactory = Callable[..., OddServer]
LIMIT = 60.0  # seconds, per command (the slowest case, 1,100 pages, takes ~6 s)
MEMORY_MIB = 150.0  # a plain `syncd ls` peaks at ~40 MiB; the page cap adds 16 MiB
DEADLINE = "1"  # SYNCD_ANSWER_DEADLINE for these tests: a trickle is cut off after 1 s
MALFORMED = ["not-object", "no-id", "bytes-string", "expires-date", "huge-number"]
MALFORMED += ["dot-id", "dotdot-id", "nul-id"]
# Clear screen, set the window title (BEL-terminated), a bidi override: what a hostile
# answer or file name holds, and how `printable` shows it.
HOSTILE = "\x1b[2J\x1b]0;owned\x07\u202e"
SHOWN = "\\x1b[2J\\x1b]0;owned\\x07\\u202e"


def syncd(server: OddServer, *args: str | Path, tmp_path: Path, **env: str) -> Measured:
    """Run one syncd command against ``server`` with the key in the environment."""
    environment = server.env(**{"SYNCD_ANSWER_DEADLINE": DEADLINE, **env})
    environment.setdefault("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    return run_measured(*args, "--base-url", server.base_url, env=environment, timeout=LIMIT)


def assert_bounded(result: Measured, server: OddServer, *, says: str, code: int = 1) -> None:
    """Exit ``code`` within LIMIT, memory under MEMORY_MIB, the last line says ``says``,
    no traceback, no request to a wrong URL."""
    assert result.returncode == code, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.seconds < LIMIT
    assert result.max_rss_mib < MEMORY_MIB, f"{result.max_rss_mib:.0f} MiB"
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("syncd:") and says in last, last
    assert server.wrong_requests() == []


BATCH_LINE = '{"custom_id": "%s", "method": "POST", "url": "/v1/embeddings", "body": {}}\n'


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write(root, "a.txt", "alpha")
    write(root, "b.txt", "bravo")
    return root


# -- a listing that does not end ------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "says", "deadline"),
    [
        ("endless-listing", "larger than 16 MiB", "20"),
        ("trickle-listing", "deadline of 1 s", "1"),
        ("fresh-cursor", "pages without end", "1"),
        ("nested-listing", "nested too deeply", "1"),
        ("gzip-bomb", "larger than 16 MiB", "20"),
    ],
)
def test_ls_ends_with_one_line_whatever_the_listing_does(
    odd_server: OddFactory, tmp_path: Path, mode: str, says: str, deadline: str
) -> None:
    """`syncd ls` against a listing without end, a trickle (1 B / 0.2 s), fresh cursors
    for ever, JSON nested 100,000 deep, a gzip bomb: exit 1 within 60 s, < 150 MiB.
    (The cap cases get a 20 s deadline so that the cap, not the deadline, ends them.)"""
    gzip_bomb()
    server = odd_server(mode)
    server.add_file("a.txt", b"hello")
    result = syncd(server, "ls", tmp_path=tmp_path, SYNCD_ANSWER_DEADLINE=deadline)
    assert_bounded(result, server, says=says)


@pytest.mark.parametrize("mode", ["endless-listing", "trickle-listing", "fresh-cursor"])
def test_sync_stops_before_uploading_when_the_listing_does_not_end(
    odd_server: OddFactory, tmp_path: Path, folder: Path, mode: str
) -> None:
    """`syncd sync` says once that it cannot list, uploads and deletes nothing, and exits
    1 within 60 s under 150 MiB (the engine stops a pass whose listing fails)."""
    server = odd_server(mode)
    result = syncd(server, "sync", folder, "--state", tmp_path / "state", tmp_path=tmp_path)
    assert_bounded(result, server, says="NOT in sync")
    assert "syncd: stopped: cannot list the remote files" in result.stderr
    assert server.count("POST") == server.count("DELETE") == 0


# -- malformed entries -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", MALFORMED)
def test_ls_names_the_malformed_entry(odd_server: OddFactory, tmp_path: Path, kind: str) -> None:
    """One bad entry (not an object, no id, bytes "abc", expires_at a date, 1e400, '.',
    '..', NUL in the id): exit 1 naming entry 2 of page 1, within 60 s, no traceback."""
    server = odd_server(f"malformed:{kind}")
    server.add_file("a.txt", b"hello")
    result = syncd(server, "ls", tmp_path=tmp_path)
    assert_bounded(result, server, says="page 1): entry 2")
    assert "\x00" not in result.stderr


@pytest.mark.parametrize("kind", ["bytes-string", "dot-id", "nul-id"])
def test_a_malformed_listing_never_leads_to_a_delete_or_a_re_upload(
    odd_server: OddFactory, tmp_path: Path, folder: Path, kind: str
) -> None:
    """After an honest sync, a listing with a bad entry is no listing at all: the pass
    stops before acting, so b.txt deleted locally is not deleted remotely yet, nothing
    is taken for gone (no re-upload), and the ledger still holds both copies."""
    server = odd_server("honest")
    state = tmp_path / "state"
    assert syncd(server, "sync", folder, "--state", state, tmp_path=tmp_path).returncode == 0
    ids = {f["filename"]: i for i, f in server.files.items()}
    server.mode = f"malformed:{kind}"
    (folder / "b.txt").unlink()
    write(folder, "c.txt", "charlie")
    result = syncd(server, "sync", folder, "--state", state, tmp_path=tmp_path)
    assert_bounded(result, server, says="NOT in sync")
    assert "cannot list the remote files" in result.stderr and "entry 2" in result.stderr
    assert server.count("DELETE") == 0
    assert server.count("POST") == 2  # a and b, in the honest pass only
    (ledger,) = state.glob("*.db")
    with sqlite3.connect(ledger) as db:
        rows = dict(db.execute("SELECT path, file_id FROM files WHERE file_id IS NOT NULL"))
    assert rows == {"a.txt": ids["a.txt"], "b.txt": ids["b.txt"]}


def test_run_survives_a_malformed_listing(odd_server: OddFactory, tmp_path: Path) -> None:
    """`syncd run` with a listing holding 'bytes': "abc": it pauses (ready, status
    'paused: cannot list ... bytes is a string'), uploads nothing, and once the server
    answers honestly a SIGHUP mirrors the file; SIGTERM exits 0; no traceback, peak
    < 150 MiB. (It used to exit 70 and, under Restart=on-failure, restart for ever.)"""
    server = odd_server("malformed:bytes-string")
    folder = tmp_path / "data"
    write(folder, "a.txt", "alpha")
    env = server.env(SYNCD_ANSWER_DEADLINE=DEADLINE)
    with DaemonProcess(
        None, folder, tmp_path / "state", "--base-url", server.base_url, env=env
    ) as daemon:
        ready = daemon.start_ready().wait_event("ready")
        assert "paused: cannot list" in ready["status"]
        assert "is a string, not an integer" in ready["status"]
        assert server.count("POST") == 0
        server.mode = "honest"
        daemon.send(signal.SIGHUP)
        daemon.wait_event("uploaded")
        memory = peak_rss_mib(daemon.pid)
        assert daemon.stop(signal.SIGTERM) == 0
    assert memory < MEMORY_MIB
    assert "Traceback" not in daemon.log_text()
    assert [f["filename"] for f in server.files.values()] == ["a.txt"]
    assert server.wrong_requests() == []


def test_run_survives_a_listing_without_end(odd_server: OddFactory, tmp_path: Path) -> None:
    """`syncd run` against an endless listing: ready, stops on SIGTERM with 0, peak
    memory < 150 MiB."""
    server = odd_server("endless-listing")
    folder = tmp_path / "data"
    write(folder, "a.txt", "alpha")
    env = server.env(SYNCD_ANSWER_DEADLINE=DEADLINE)
    with DaemonProcess(
        None, folder, tmp_path / "state", "--base-url", server.base_url, env=env
    ) as daemon:
        daemon.start_ready()
        memory = peak_rss_mib(daemon.pid)
        assert daemon.stop(signal.SIGTERM) == 0
    assert memory < MEMORY_MIB
    assert "Traceback" not in daemon.log_text()


# -- ids that are not one path segment ---------------------------------------------------------


def test_dot_ids_never_turn_into_a_delete_of_the_collection(
    odd_server: OddFactory, tmp_path: Path, folder: Path
) -> None:
    """A server handing out the ids '.' and '..': the uploads are ambiguous, the files
    deleted locally later are never deleted as DELETE /v1/files or DELETE /v1."""
    server = odd_server("dot-ids")
    state = tmp_path / "state"
    first = syncd(server, "sync", folder, "--state", state, tmp_path=tmp_path)
    assert_bounded(first, server, says="NOT in sync")
    for name in ("a.txt", "b.txt"):
        (folder / name).unlink()
    second = syncd(server, "sync", folder, "--state", state, tmp_path=tmp_path)
    assert_bounded(second, server, says="NOT in sync")
    assert server.count("DELETE", "/v1") == 0


def test_pull_all_refuses_a_listing_with_a_nul_in_an_id(
    odd_server: OddFactory, tmp_path: Path
) -> None:
    """`pull --all` used to crash on a NUL in an id: now exit 1, one line, nothing written."""
    server = odd_server("malformed:nul-id")
    server.add_file("a.txt", b"hello")
    dest = tmp_path / "dest"
    result = syncd(server, "pull", "--all", dest, tmp_path=tmp_path)
    assert_bounded(result, server, says="not one safe path segment")
    assert list(dest.iterdir()) == []


# -- downloads past the expected size ------------------------------------------------------------


def test_pull_all_stops_a_download_at_the_listed_size(
    odd_server: OddFactory, tmp_path: Path
) -> None:
    """A file listed as 5 bytes whose content never ends: the pull fails that file
    within 60 s, under 150 MiB, and DEST holds nothing (no part file either)."""
    server = odd_server("oversized-download")
    server.add_file("a.txt", b"hello", purpose="vision")  # a purpose the API downloads
    dest = tmp_path / "dest"
    result = syncd(server, "pull", "--all", dest, tmp_path=tmp_path)
    assert_bounded(result, server, says="INCOMPLETE")
    assert "more than the file's 5 bytes" in result.stderr
    assert [p for p in dest.rglob("*")] == []


def test_pull_from_a_ledger_stops_a_download_at_the_recorded_size(
    odd_server: OddFactory, tmp_path: Path
) -> None:
    """The same for a ledger pull: each file fails at its recorded size, nothing is
    written, the disk does not fill."""
    server = odd_server("honest")
    state = tmp_path / "state"
    batch = tmp_path / "batch"
    for name in ("a.jsonl", "b.jsonl"):  # batch: a purpose the API downloads
        write(batch, name, BATCH_LINE % name)
    sync = syncd(server, "sync", batch, "--purpose", "batch", "--state", state, tmp_path=tmp_path)
    assert sync.returncode == 0, sync.stderr
    server.mode = "oversized-download"
    dest = tmp_path / "dest"
    result = syncd(server, "pull", dest, "--folder", batch, "--state", state, tmp_path=tmp_path)
    assert_bounded(result, server, says="2 failed")
    assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) == 0


# -- output ------------------------------------------------------------------------------------


def test_ls_escapes_what_the_server_sends(odd_server: OddFactory, tmp_path: Path) -> None:
    """Filenames and purposes with terminal escapes (clear screen, colour, a bidi
    override) are printed escaped; stdout holds no control character."""
    server = odd_server("honest")
    server.add_file("evil\x1b[2J\x1b[31m.txt", b"x", purpose="user\x1b]0;owned\x07")
    server.add_file("gnp.\u202eexe", b"y")
    result = syncd(server, "ls", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not any(c in result.stdout for c in "\x1b\x07\u202e")
    assert "evil\\x1b[2J\\x1b[31m.txt" in result.stdout
    assert "user\\x1b]0;owned\\x07" in result.stdout
    assert "gnp.\\u202eexe" in result.stdout
    listed = json.loads(syncd(server, "ls", "--json", tmp_path=tmp_path).stdout)
    assert {f["filename"] for f in listed} == {"evil\x1b[2J\x1b[31m.txt", "gnp.\u202eexe"}


class HostileStoreFiles:
    """Rewrites a vector store's file objects on their way to syncd: a failed file's
    ``last_error.message`` gets ``HOSTILE`` in front, and with ``status`` set every
    file's status gets it behind."""

    def __init__(self) -> None:
        self.status = False

    def __call__(self, body: Any) -> Any:
        items = body.get("data", [body]) if isinstance(body, dict) else []
        for item in items:
            if not isinstance(item, dict) or item.get("object") != "vector_store.file":
                continue
            if isinstance(item.get("last_error"), dict):
                item["last_error"]["message"] = HOSTILE + item["last_error"]["message"]
            if self.status:
                item["status"] += HOSTILE
        return body


def assert_escaped(text: str) -> None:
    """No control character (nor bidi override) in ``text``'s lines, save JSON log lines
    (which escape what JSON escapes)."""
    lines = [line for line in text.splitlines() if not line.startswith("{")]
    assert not [line for line in lines if any(c in line for c in "\x1b\x07\u202e")], text


def test_vector_store_text_from_the_server_is_escaped(
    server_factory: ServerFactory, odd_server: OddFactory, tmp_path: Path
) -> None:
    """A store whose answers put terminal escapes in a failed file's last_error message
    (a `syncd serve` behind a forwarding odd server), and a local file named with them:
    `sync` (its --dry-run plan and its failure lines), `status` and `ls --vector-store`
    print both escaped, in text; the JSON forms keep them as JSON escapes."""
    upstream = server_factory(extra_args=["--index-delay", "0.2"])
    upstream.set_faults({"indexing": {"fail_names": ["bad*"], "failure_code": "unsupported_file"}})
    answers = HostileStoreFiles()
    proxy = odd_server(forwarding(upstream.base_url, answers))
    folder, state = tmp_path / "data", tmp_path / "state"
    write(folder, "good.md", "# fine\n")
    write(folder, f"bad{HOSTILE}.md", "# fails\n")
    config = write_config(tmp_path, folder, vector_store="docs")
    env = {"OPENAI_API_KEY": upstream.client_key}

    def syncd_via_proxy(*args: str | Path) -> Any:
        return run_syncd(None, *args, "--base-url", proxy.base_url, env=env)

    dry = syncd_via_proxy("sync", "--config", config, "--state", state, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"upload   bad{SHOWN}.md  (new file)" in dry.stdout
    assert f"attach   bad{SHOWN}.md  (to vector store 'docs' once uploaded)" in dry.stdout
    assert_escaped(dry.stdout + dry.stderr)
    result = syncd_via_proxy("sync", "--config", config, "--state", state)
    assert result.returncode == 1, result.stderr
    assert (
        f"syncd: failed: bad{SHOWN}.md: vector store 'docs': indexing failed: "
        f"unsupported_file: {SHOWN}The file type" in result.stderr
    )
    assert_escaped(result.stdout + result.stderr)
    status = run_syncd(None, "status", "--config", config, "--state", state)
    assert status.returncode == 0, status.stderr
    assert f"  bad{SHOWN}.md: indexing failed: unsupported_file: {SHOWN}The file" in status.stdout
    assert_escaped(status.stdout + status.stderr)
    (store,) = json.loads(
        run_syncd(None, "status", "--config", config, "--state", state, "--json").stdout
    )["vector_stores"]
    assert HOSTILE in store["problems"][0]["reason"]
    answers.status = True
    listed = syncd_via_proxy("ls", "--folder", folder, "--state", state, "--vector-store")
    assert listed.returncode == 0, listed.stderr
    assert f"failed{SHOWN}" in listed.stdout and f"completed{SHOWN}" in listed.stdout
    assert f"-> bad{SHOWN}.md" in listed.stdout
    assert_escaped(listed.stdout + listed.stderr)
    (entries,) = json.loads(
        syncd_via_proxy(
            "ls", "--folder", folder, "--state", state, "--vector-store", "--json"
        ).stdout
    ).values()
    assert {e["status"] for e in entries} == {f"failed{HOSTILE}", f"completed{HOSTILE}"}


# -- hostile local files -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["sync", "run"])
def test_jsonl_lines_that_cannot_be_judged_fail_their_file_only(
    server: ServerProcess, tmp_path: Path, command: str
) -> None:
    """A line nested 100,000 deep and a 5,000-digit integer: each file gets one reason
    ('cannot be judged'), the good file is mirrored, nothing crashes."""
    folder = tmp_path / "data"
    write(folder, "deep.jsonl", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
    write(folder, "digits.jsonl", b'{"a": ' + b"9" * 5000 + b"}\n")
    write(folder, "good.jsonl", b'{"messages": []}\n')
    state = tmp_path / "state"
    env = {"OPENAI_API_KEY": server.client_key}
    args = ["--purpose", "fine-tune", "--base-url", server.base_url]
    if command == "sync":
        result = run_measured("sync", folder, "--state", state, *args, env=env, timeout=LIMIT)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        text = result.stderr
    else:
        with DaemonProcess(None, folder, state, *args, env=env) as daemon:
            daemon.start_ready()
            daemon.wait_event("uploaded")
            assert daemon.stop(signal.SIGTERM) == 0
        text = daemon.log_text()
        assert "Traceback" not in text
    assert "deep.jsonl" in text and "nested too deeply" in text
    assert "digits.jsonl" in text and "too many digits" in text
    assert remote_files(server) == {"good.jsonl": b'{"messages": []}\n'}
