"""Shared fixtures: a real `syncd serve` per test, and an environment scrubbed clean.

- ``server``: a fresh `syncd serve` (own store under tmp_path, any key accepted, no
  faults), as a ``serverproc.ServerProcess``; ``server.base_url`` ends in ``/v1``,
  clients send ``server.client_key``.
- ``server_factory(api_key=None, faults=None, max_bytes=None, data_dir=None,
  allow_all_downloads=False, extra_args=())``: more servers, each started and stopped at
  the end of the test.
- ``odd_server(mode_or_behaviour, read_post_body=True)``: a server that misbehaves on
  purpose (``oddserver.OddServer``: a mode name, or a function answering each request),
  in this process, stopped at the end of the test.
- Every test runs with OPENAI_*/AZURE_*/SYNCD_* removed from the environment and the
  XDG base directories pointing into tmp_path, so the developer's keys and state never
  leak in or get written to.
- At the end of the run, one line says how many answers were also checked against the
  published spec in ``../shared/openai-files-api/``, or how many tests and answer checks
  were skipped because that folder is not beside the clone (see ``apispec``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import serverproc` anywhere

import apispec
from oddserver import Behaviour, OddServer
from serverproc import SCRUBBED_ENV_PREFIXES, ServerProcess

ServerFactory = Callable[..., ServerProcess]


@pytest.fixture(autouse=True)
def _scrubbed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No OPENAI_*/AZURE_*/SYNCD_* from the developer; XDG dirs inside tmp_path."""
    for name in list(os.environ):
        if name.startswith(SCRUBBED_ENV_PREFIXES):
            monkeypatch.delenv(name)
    xdg = tmp_path / "xdg"
    for var, sub in (
        ("XDG_STATE_HOME", "state"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_DATA_HOME", "data"),
    ):
        monkeypatch.setenv(var, str(xdg / sub))


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start `syncd serve` processes with chosen options; all are stopped afterwards."""
    started: list[ServerProcess] = []

    def make(
        *,
        api_key: str | None = None,
        faults: dict[str, Any] | None = None,
        max_bytes: int | None = None,
        data_dir: Path | None = None,
        allow_all_downloads: bool = False,
        extra_args: Sequence[str] = (),
    ) -> ServerProcess:
        store = data_dir or tmp_path / f"serve-store-{len(started)}"
        proc = ServerProcess(
            store,
            api_key=api_key,
            faults=faults,
            max_bytes=max_bytes,
            allow_all_downloads=allow_all_downloads,
            extra_args=extra_args,
        )
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def odd_server() -> Iterator[Callable[..., OddServer]]:
    """Start misbehaving servers (a mode name or a behaviour); all are stopped afterwards."""
    started: list[OddServer] = []

    def start(how: str | Behaviour = "honest", read_post_body: bool = True) -> OddServer:
        if isinstance(how, str):
            server = OddServer(how, read_post_body=read_post_body)
        else:
            server = OddServer(behaviour=how, read_post_body=read_post_body)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: ServerFactory) -> ServerProcess:
    """A fresh `syncd serve` on a free loopback port: empty store, any key, no faults."""
    return server_factory()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist, a worker hands its spec-check tally to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["spec_tally"] = {
            "run": apispec.TALLY.run,
            "skipped_in": list(apispec.TALLY.skipped_in),
        }


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_testnodedown(node: Any, error: Any) -> None:
    """The controller adds each worker's tally to its own (the summary states the sum)."""
    tally = getattr(node, "workeroutput", {}).get("spec_tally")
    if tally:
        apispec.TALLY.run += tally["run"]
        apispec.TALLY.skipped_in.extend(tally["skipped_in"])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """State the checks against the published spec: how many ran, or were skipped and why."""
    reason = apispec.published_absent_reason()
    skipped_tests = sum(
        1 for report in terminalreporter.stats.get("skipped", []) if reason in str(report.longrepr)
    )
    line = apispec.tally_line(skipped_tests)
    if line:
        terminalreporter.write_sep("-", "published spec")
        terminalreporter.write_line(line)
