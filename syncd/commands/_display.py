"""Displays the commands share: bytes and files moving, as a bar or as plain lines."""

from __future__ import annotations

import threading
from typing import IO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class TransferDisplay:
    """Bytes and files moving: a rich bar on a terminal, log lines otherwise. Problem
    lines are printed above the bar (or as plain lines) as they happen."""

    def __init__(self, stream: IO[str], *, verb: str, interactive: bool | None = None) -> None:
        self.stream = stream
        self.verb = verb
        self.interactive = stream.isatty() if interactive is None else interactive
        self._lock = threading.Lock()
        self._done = 0
        self._total = 0
        self.console = Console(file=stream, stderr=True, highlight=False)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self.progress.add_task("", total=None, visible=False)

    def start(self, files: int, total_bytes: int) -> None:
        self._total = files
        self.progress.update(
            self._task, total=total_bytes or None, visible=True, description=self._label()
        )
        if self.interactive and files:
            self.progress.start()

    def stop(self) -> None:
        if self.interactive:
            self.progress.stop()

    def _label(self) -> str:
        return f"{self.verb} {self._done}/{self._total} files"

    def advanced(self, nbytes: int) -> None:
        if self.interactive:
            self.progress.update(self._task, advance=nbytes)

    def file_done(self) -> None:
        with self._lock:
            self._done += 1
            if self.interactive:
                self.progress.update(self._task, description=self._label())

    def say(self, line: str) -> None:
        """One line on stderr, above the bar when there is one."""
        with self._lock:  # one whole line at a time, whichever thread says it
            if self.interactive and self.progress.live.is_started:
                self.console.print(escape(line), markup=False, soft_wrap=True)
            else:
                self.stream.write(line + "\n")
                self.stream.flush()
