"""The command line: parse, set up logging, hand over to one module per subcommand.

Each module in ``syncd.commands`` exposes ``register(subparsers)``, which adds its
parser and sets ``func(args) -> int`` as the default. Nothing else lives here, except
the last word on an error: one line, redacted (``redact_text``) and with control
characters escaped, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import structlog

from syncd import __version__
from syncd.errors import ConfigError, SyncdError
from syncd.log import configure_logging, protect_standard_streams, redact_text
from syncd.restore.names import printable

COMMANDS = (
    "serve",
    "sync",
    "status",
    "run",
    "pull",
    "verify",
    "ls",
    "candidates",
    "approve-deletes",
)


def _wanted_commands(argv: Sequence[str]) -> tuple[str, ...]:
    """The subcommand named on the command line, or all of them (for --help and errors).

    Importing only the module that will run keeps every start fast: `syncd serve` does
    not load the watcher, `syncd status` does not load the HTTP stack.
    """
    takes_value = False
    for arg in argv:
        if arg in COMMANDS and not takes_value:
            return (arg,)
        if not takes_value and not arg.startswith("-"):
            break
        takes_value = arg == "--log-format"
    return COMMANDS


def build_parser(commands: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd",
        description="Keep a local folder mirrored to the OpenAI Files API.",
        epilog="`syncd COMMAND --help` shows a command's options. To try it without an "
        "account: syncd run --local --create-folder ./data",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default="auto",
        help="log lines as JSON (default when stderr is not a terminal) or for people",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in commands:
        try:
            module_name = f"syncd.commands.{name.replace('-', '_')}"
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Before anything is printed: a closed pipe or a hung-up terminal must never raise
    # into syncd (nor make Python report a BrokenPipeError at exit).
    protect_standard_streams()
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_wanted_commands(arguments))
    if not arguments:  # `syncd` alone: what it can do, not just "COMMAND is required"
        parser.print_help()
        return 2
    args = parser.parse_args(arguments)
    configure_logging(fmt=args.log_format, verbose=args.verbose)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"syncd: {_one_line(exc)}", file=sys.stderr)
        return 2
    except SyncdError as exc:
        print(f"syncd: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("syncd: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line for the user, the detail in the log
        structlog.get_logger(__name__).exception("internal_error")
        print(f"syncd: internal error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 70
    return code


def _one_line(exc: BaseException) -> str:
    """``exc`` as one line for the terminal: redacted, control characters escaped."""
    return printable(redact_text(str(exc)))
