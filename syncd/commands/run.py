"""``syncd run``: the daemon. Watch folders and mirror every change until stopped.

``syncd run FOLDER [options of sync] [--debounce S] [--rescan-interval S]`` mirrors one
folder; ``syncd run --config FILE`` mirrors every ``[[mirror]]`` of the file (options
apply to each). A missing folder nothing was mirrored from is created with
``--create-folder`` (the README's ``syncd run --local --create-folder ./data`` on a fresh
clone) and is an error without it (``./dtaa``, a typo, must not become an empty
mirror); a missing folder that *was* mirrored means an unmounted disk, and that mirror
waits for it. Configuration mistakes exit 2 with one line before anything starts.
``--metrics ADDRESS:PORT`` (or ``metrics_address`` in the config; off by default; a bare
port binds 127.0.0.1) serves ``/metrics`` for Prometheus (``syncd.daemon.metrics``); an address
that cannot be bound (in use, not ours) is refused at start with one line, exit 2:
a daemon run unattended for months must not silently lose its monitoring.
Behaviour: ``syncd.daemon.loop``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from syncd.commands._options import checked_option
from syncd.commands._remote import open_remote, remote_identity
from syncd.commands.sync import add_mirror_arguments, mirror_from_args
from syncd.config import MirrorConfig, check_debounce, check_rescan_interval, load_config
from syncd.daemon.loop import Daemon
from syncd.daemon.metrics_address import parse_metrics_address
from syncd.daemon.signals import SignalRelay
from syncd.errors import ConfigError
from syncd.paths import LEDGER_SUFFIX, ledger_path
from syncd.remote.identity import RemoteIdentity
from syncd.remote.observer import RequestObserver
from syncd.remote.protocol import FilesRemote
from syncd.remote.settings import (
    AZURE_CREDENTIAL_NAME,
    CREDENTIAL_NAME,
    RemoteSettings,
    remote_settings_from_env,
)
from syncd.remote.transport import Transport
from syncd.state.ledger import Ledger

if TYPE_CHECKING:
    from syncd.daemon.metrics import DaemonMetrics


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="watch folders and mirror every change (the daemon; systemd Type=notify)",
        description="A full reconcile, then watch the folder(s) and mirror each change once "
        "it has been quiet for --debounce seconds, with a full rescan every "
        "--rescan-interval seconds. SIGTERM/SIGINT stop gracefully, SIGHUP reloads.",
    )
    add_mirror_arguments(parser)
    parser.add_argument(
        "--debounce",
        type=checked_option(float, "a number of seconds", check_debounce),
        metavar="SECONDS",
        help="handle a changed path once it has been quiet this long (default: 1)",
    )
    parser.add_argument(
        "--rescan-interval",
        type=checked_option(float, "a number of seconds", check_rescan_interval),
        metavar="SECONDS",
        help="full rescan period, which catches anything the watcher missed (default: 600)",
    )
    parser.add_argument(
        "--metrics",
        metavar="ADDRESS:PORT",
        help="serve /metrics for Prometheus there (a bare PORT: on 127.0.0.1; default: off, "
        "or the config's metrics_address)",
    )
    parser.add_argument(
        "--accept-folder-change",
        action="store_true",
        help="the folder now lives on another filesystem (or was replaced by an empty "
        "directory) on purpose: mirror it as it is (the mass-delete guard still applies)",
    )
    parser.set_defaults(func=run)


def load_mirrors(args: argparse.Namespace, env: Mapping[str, str]) -> list[MirrorConfig]:
    """The mirrors the options describe: one FOLDER, or every [[mirror]] of --config."""
    if args.config is None or args.folder is not None:
        mirrors = [mirror_from_args(args, env)]
    else:
        config = load_config(args.config, env)
        mirrors = [
            mirror_from_args(argparse.Namespace(**{**vars(args), "folder": m.folder}), env)
            for m in config.mirrors
        ]
        if len(mirrors) > 1 and args.state is not None and args.state.name.endswith(LEDGER_SUFFIX):
            raise ConfigError(
                f"--state {args.state} names one ledger file, but {args.config} has "
                f"{len(mirrors)} mirrors; give a directory instead"
            )
    return [
        m.with_overrides(debounce=args.debounce, rescan_interval=args.rescan_interval)
        for m in mirrors
    ]


class ArgsRemoteSource:
    """The remote named by ``--local`` / ``--base-url`` and the environment's key.

    A reload re-reads the key (from its file or credential) and the mirrors'
    ``max_uploads_per_minute`` and opens a new remote only when either changed; with
    ``--local`` the embedded server's key never changes.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        state_dir: Path,
        *,
        pool_size: int,
        env: Mapping[str, str],
    ) -> None:
        self._args = args
        self._state_dir = state_dir
        self._pool_size = pool_size
        self._env = env
        self._stack = contextlib.ExitStack()
        self._retired: list[contextlib.ExitStack] = []
        self._settings: tuple[RemoteSettings | None, tuple[int | None, ...]] | None = None
        self.observer: RequestObserver | None = None  # the metrics, if any

    def _settings_now(self) -> tuple[RemoteSettings | None, tuple[int | None, ...]]:
        # The mirrors share one remote, so one budget: every mirror's pacing value counts.
        paces = tuple(m.max_uploads_per_minute for m in load_mirrors(self._args, self._env))
        if self._args.local:
            return None, paces
        return remote_settings_from_env(self._env, base_url=self._args.base_url), paces

    def _open(self, stack: contextlib.ExitStack) -> FilesRemote:
        assert self._settings is not None
        return stack.enter_context(
            open_remote(
                self._args,
                self._state_dir,
                pool_size=self._pool_size,
                reuse_running=False,  # the daemon always owns its embedded server
                uploads_per_minute=self._settings[1],
            )
        )

    def open(self) -> FilesRemote:
        self._settings = self._settings_now()
        return self._observed(self._open(self._stack))

    def _observed(self, remote: FilesRemote) -> FilesRemote:
        transport = getattr(remote, "transport", None)
        if self.observer is not None and isinstance(transport, Transport):
            transport.observer = self.observer
        return remote

    def reload(self) -> FilesRemote | None:
        settings = self._settings_now()
        if settings == self._settings:
            return None
        previous, self._settings = self._settings, settings
        stack = contextlib.ExitStack()
        try:
            remote = self._open(stack)
        except BaseException:
            self._settings = previous
            raise
        # The old remote stays open until the end: a mirror's pass in progress on another
        # thread still uses it, and takes the new one at its next pass.
        self._retired.append(self._stack)
        self._stack = stack
        return self._observed(remote)

    def key_stamp(self) -> Hashable:
        """The identity and mtime of every file the key may be read from."""
        candidates: list[Path] = []
        if self._env.get("OPENAI_API_KEY_FILE", ""):
            candidates.append(Path(self._env["OPENAI_API_KEY_FILE"]))
        credentials = self._env.get("CREDENTIALS_DIRECTORY", "")
        if credentials:
            candidates += [
                Path(credentials, CREDENTIAL_NAME),
                Path(credentials, AZURE_CREDENTIAL_NAME),
            ]
        stamps: list[tuple[Path, int, int, int] | None] = []
        for path in candidates:
            try:
                st = path.stat()
            except OSError:
                stamps.append(None)
                continue
            stamps.append((path, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamps)

    def identity(self) -> RemoteIdentity:
        return remote_identity(self._args, self._state_dir)

    def close(self) -> None:
        self._stack.close()
        for stack in self._retired:
            stack.close()
        self._retired.clear()


def _interactive(log_format: str, env: Mapping[str, str]) -> bool:
    """Whether a person watches stderr: then long passes show a progress bar."""
    if log_format == "json" or env.get("JOURNAL_STREAM"):
        return False
    try:
        return sys.stderr.isatty()
    except (OSError, ValueError):
        return False


def check_folders(mirrors: list[MirrorConfig], env: Mapping[str, str], *, create: bool) -> None:
    """A missing folder that was never mirrored is a mistake unless ``--create-folder``."""
    for mirror in mirrors:
        if mirror.folder.exists() or create:
            continue
        ledger_file = ledger_path(mirror.folder, mirror.state_path, env)
        if ledger_file.is_file():
            with Ledger.open_readonly(ledger_file) as ledger:
                if ledger.tracked_count() or ledger.open_intents():
                    continue  # mirrored before: an unmounted disk, waited for
        raise ConfigError(
            f"folder {mirror.folder} does not exist (a typo?); add --create-folder to "
            "create it and mirror it from empty"
        )


def metrics_address(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str] | None:
    """(the address given, where it came from) of --metrics or the config's, or None."""
    if args.metrics is not None:
        return args.metrics, "--metrics"
    if args.config is not None:
        address = load_config(args.config, env).metrics_address
        if address is not None:
            return address, f"{args.config.name}: metrics_address"
    return None


def run(args: argparse.Namespace) -> int:
    env = os.environ
    mirrors = load_mirrors(args, env)
    check_folders(mirrors, env, create=args.create_folder)
    with contextlib.ExitStack() as stack:
        metrics = start_metrics(args, env)
        if metrics is not None:
            stack.callback(metrics.close)
        return run_daemon(args, env, mirrors, metrics)


def start_metrics(args: argparse.Namespace, env: Mapping[str, str]) -> DaemonMetrics | None:
    """The metrics endpoint, serving before anything else starts (exit 2 if it cannot)."""
    found = metrics_address(args, env)
    if found is None:
        return None
    address, where = found
    host, port = parse_metrics_address(address, where)
    from syncd.daemon.metrics import DaemonMetrics  # prometheus_client only with --metrics

    metrics = DaemonMetrics()
    metrics.serve(host, port, where=where)
    print(f"syncd: metrics on http://{address_for_url(host)}:{port}/metrics", file=sys.stderr)
    return metrics


def address_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run_daemon(
    args: argparse.Namespace,
    env: Mapping[str, str],
    mirrors: list[MirrorConfig],
    metrics: DaemonMetrics | None,
) -> int:
    first = mirrors[0]
    state_dir = ledger_path(first.folder, first.state_path, env).parent
    # One remote for every mirror: its pool holds every mirror's workers at once.
    source = ArgsRemoteSource(
        args, state_dir, pool_size=sum(m.max_in_flight for m in mirrors) + 2, env=env
    )
    source.observer = metrics
    daemon = Daemon(
        mirrors,
        lambda: load_mirrors(args, env),
        source,
        env=env,
        accept_folder_change=args.accept_folder_change,
        switch_remote=args.switch_remote,
        create_folder=args.create_folder,
        progress_stream=sys.stderr if _interactive(args.log_format, env) else None,
        observer=metrics,
    )
    if metrics is not None:
        metrics.watch(daemon.statuses)
    with SignalRelay(daemon.request_stop, daemon.request_reload):
        return daemon.run()
