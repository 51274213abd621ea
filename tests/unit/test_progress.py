"""The progress bar's failure line (``syncd.sync.progress.ProgressReporter``)."""

from __future__ import annotations

import io
import time

import pytest

from syncd.local.scan import LocalFile, ScanResult
from syncd.sync import progress
from syncd.sync.plan import Action, ActionKind, Plan
from syncd.sync.result import Outcome, OutcomeStatus, PassResult


def test_failure_line_above_the_bar_escapes_control_characters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failure printed above the bar shows a path and a reason holding terminal escapes
    (clear screen, a window title, a bidi override) escaped, not as control characters."""
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0.0)
    monkeypatch.setenv("COLUMNS", "200")  # the line unwrapped
    stream = io.StringIO()
    reporter = progress.ProgressReporter(stream)
    hostile = "\x1b[2J\x1b]0;owned\x07\u202e"
    path = f"evil{hostile}.txt"
    action = Action(ActionKind.UPLOAD, path, "new file", local=LocalFile(path, 1, 0, 0))
    reporter.pass_started(Plan(actions=(action,)), ScanResult())
    deadline = time.monotonic() + 10
    while not reporter.shown and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reporter.shown
    reason = f"HTTP 400: upload of {path}: {hostile}"
    reporter.action_finished(Outcome(action, OutcomeStatus.FAILED, reason=reason))
    reporter.pass_finished(PassResult(started_at=0.0))
    shown = "\\x1b[2J\\x1b]0;owned\\x07\\u202e"
    text = stream.getvalue()
    assert f"failed evil{shown}.txt: HTTP 400: upload of evil{shown}.txt: {shown}" in text
    assert not any(c in text for c in "\x1b\x07\u202e")
