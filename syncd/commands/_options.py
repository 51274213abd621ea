"""Option types shared by the subcommands: parse a value, then apply the config check,
so that an option and the config key it overrides refuse the same values alike."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from syncd.errors import ConfigError

T = TypeVar("T")


def checked_option(
    convert: Callable[[str], T], expected: str, check: Callable[[Any, str], T]
) -> Callable[[str], T]:
    """An argparse ``type=``: ``convert`` the text (else "is not EXPECTED"), then ``check``."""

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}") from None
        try:
            return check(value, "value")
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value: ")) from None

    return parse


def add_try_all_argument(parser: argparse.ArgumentParser) -> None:
    """``--try-all-purposes`` (pull, verify): ask for the content of every file, whatever
    its purpose, instead of deciding from the purpose list which ones the API serves."""
    parser.add_argument(
        "--try-all-purposes",
        action="store_true",
        help="ask for every file's content, even of purposes the API does not let anyone "
        "download (for a server that serves them, e.g. `syncd serve --allow-all-downloads`; "
        "with --local the embedded server serves them); a refusal is still counted",
    )


def add_state_argument(parser: argparse.ArgumentParser) -> None:
    """``--state PATH``: where the ledger lives (every command that reads or writes one)."""
    parser.add_argument(
        "--state",
        type=Path,
        metavar="PATH",
        help="state directory, or the ledger file itself if it ends in .db",
    )
