"""Configuration: TOML and the environment parsed into frozen dataclasses, in one place.

The core (scan, plan, execute) never reads the environment or a file: commands build a
``MirrorConfig`` here and hand it over. A config file holds one ``[[mirror]]`` table per
mirrored folder (see ``config.example.toml`` for every key and its default)::

    [[mirror]]
    folder = "/srv/datasets"          # relative paths are relative to the config file
    purpose = "user_data"
    exclude = ["*.tmp"]

    [[mirror.rules]]
    glob = "fine-tune/**/*.jsonl"
    purpose = "fine-tune"
    expires_after = 86400

Errors name the file, the table and the key: ``syncd.toml: [[mirror]] #1: key
'concurency' is unknown``. Command-line options override the file's values.

Environment: ``SYNCD_MAX_FILE_BYTES`` lowers the per-file limit (tests use it to make
"over-size" files without writing 512 MB). ``SYNCD_MULTIPART_THRESHOLD`` and
``SYNCD_PART_SIZE`` (bytes) set the defaults of the ``multipart_threshold`` and
``part_size`` keys (tests send small files in several parts); a key in the file wins.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd.api import EXPIRES_MAX_SECONDS, EXPIRES_MIN_SECONDS, MAX_PART_BYTES, UPLOAD_PURPOSES
from syncd.durations import parse_duration
from syncd.errors import ConfigError
from syncd.local.rules import ALWAYS_IGNORED, DEFAULT_IGNORES, PathFilter, PurposeRule
from syncd.local.validate import Limits
from syncd.vector_config import (
    RULE_VECTOR_KEYS,
    VectorConfig,
    check_attributes,
    check_chunking,
    check_indexing_deadline,
    check_store_id,
    check_store_name,
    fold_vector_keys,
)

DEFAULT_PURPOSE = "user_data"
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64
# The daemon (`syncd run`): quiet time before a changed path is handled, and the period
# of the full rescan that catches whatever the watcher missed.
DEFAULT_DEBOUNCE_SECONDS = 1.0
MAX_DEBOUNCE_SECONDS = 3600.0
DEFAULT_RESCAN_INTERVAL_SECONDS = 600.0
MIN_RESCAN_INTERVAL_SECONDS = 0.1
# Large files: from this size on (and above the 512 MB of POST /files) a file whose
# purpose allows it goes through the Uploads API, in parts of ``part_size`` bytes.
DEFAULT_MULTIPART_THRESHOLD = 256 * 1000 * 1000
DEFAULT_PART_SIZE = MAX_PART_BYTES
# Pacing POST /files (syncd.remote.pacing): None means the server's default (1,000/min
# for api.openai.com, none elsewhere), 0 turns pacing off.
MAX_UPLOADS_PER_MINUTE = 1_000_000


@dataclass(frozen=True)
class MirrorConfig:
    """Everything one mirror (one folder) needs; built from a file and/or options."""

    folder: Path
    purpose: str = DEFAULT_PURPOSE
    rules: tuple[PurposeRule, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    expires_after: int | None = None
    max_delete: int | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    # Without an explicit ``concurrency`` (key or --concurrency) the number in flight is
    # found from the server's answers (syncd.sync.concurrency), starting at ``concurrency``.
    adaptive_concurrency: bool = True
    state_path: Path | None = None
    follow_links: bool = False
    limits: Limits = field(default_factory=Limits)
    # ``ignore`` None means the default editor-temp globs (``DEFAULT_IGNORES``); ()
    # mirrors temp files too. ``debounce`` and ``rescan_interval`` are the daemon's.
    debounce: float = DEFAULT_DEBOUNCE_SECONDS
    rescan_interval: float = DEFAULT_RESCAN_INTERVAL_SECONDS
    ignore: tuple[str, ...] | None = None
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    part_size: int = DEFAULT_PART_SIZE
    # Mirrors sharing a remote share its budget: the smallest value wins (pacing_for).
    max_uploads_per_minute: int | None = None
    # The vector store kept exact beside the Files (None: none); syncd.vector_config.
    vector: VectorConfig | None = None
    # Seconds a locally deleted file's remote copy is kept before it is deleted (0: off).
    delete_delay: float = 0.0

    @property
    def ignore_globs(self) -> tuple[str, ...]:
        """The configured ignore globs (default: editor temp files), plus syncd's own
        temporary files, which are never mirrored."""
        return (DEFAULT_IGNORES if self.ignore is None else self.ignore) + ALWAYS_IGNORED

    @property
    def max_in_flight(self) -> int:
        """The most actions in flight at once (what the connection pool must hold)."""
        return MAX_CONCURRENCY if self.adaptive_concurrency else self.concurrency

    @property
    def path_filter(self) -> PathFilter:
        # Temp files are out of scope for `sync` as for the daemon's watcher, so the two
        # never disagree about what the folder holds.
        return PathFilter(self.include, self.exclude + self.ignore_globs)

    def with_overrides(self, **changes: Any) -> MirrorConfig:
        """A copy with the given fields replaced; ``None`` values leave a field alone. A
        ``concurrency`` given is a fixed one (unless ``adaptive_concurrency`` says otherwise)."""
        given = {k: v for k, v in changes.items() if v is not None}
        if "concurrency" in given:
            given.setdefault("adaptive_concurrency", False)
        return dataclasses.replace(self, **given)


@dataclass(frozen=True)
class Config:
    mirrors: tuple[MirrorConfig, ...]
    source: Path | None = None
    # `syncd run` only: where /metrics is served (``ADDRESS:PORT``), None: off.
    metrics_address: str | None = None


# -- value checks (each names the key and the problem) -----------------------------------


def check_purpose(value: Any, where: str) -> str:
    if value not in UPLOAD_PURPOSES:
        raise ConfigError(f"{where}: purpose {value!r} is not one of {', '.join(UPLOAD_PURPOSES)}")
    return str(value)


def check_expires_after(value: Any, where: str) -> int:
    if not _is_int(value) or not EXPIRES_MIN_SECONDS <= value <= EXPIRES_MAX_SECONDS:
        raise ConfigError(
            f"{where}: expires_after must be whole seconds from {EXPIRES_MIN_SECONDS} "
            f"to {EXPIRES_MAX_SECONDS}, not {value!r}"
        )
    return int(value)


def check_concurrency(value: Any, where: str) -> int:
    if not _is_int(value) or not 1 <= value <= MAX_CONCURRENCY:
        raise ConfigError(f"{where}: concurrency must be 1 to {MAX_CONCURRENCY}, not {value!r}")
    return int(value)


def check_max_delete(value: Any, where: str) -> int:
    if not _is_int(value) or value < 0:
        raise ConfigError(f"{where}: max_delete must be a whole number >= 0, not {value!r}")
    return int(value)


def check_debounce(value: Any, where: str) -> float:
    if not _is_number(value) or not 0 <= value <= MAX_DEBOUNCE_SECONDS:
        raise ConfigError(
            f"{where}: debounce must be seconds from 0 to {MAX_DEBOUNCE_SECONDS:g}, not {value!r}"
        )
    return float(value)


def check_rescan_interval(value: Any, where: str) -> float:
    if not _is_number(value) or value < MIN_RESCAN_INTERVAL_SECONDS:
        raise ConfigError(
            f"{where}: rescan_interval must be seconds >= {MIN_RESCAN_INTERVAL_SECONDS:g}, "
            f"not {value!r}"
        )
    return float(value)


def check_multipart_threshold(value: Any, where: str) -> int:
    if not _is_int(value) or value < 1:
        raise ConfigError(
            f"{where}: multipart_threshold must be a whole number of bytes >= 1, not {value!r}"
        )
    return int(value)


def check_part_size(value: Any, where: str) -> int:
    if not _is_int(value) or not 1 <= value <= MAX_PART_BYTES:
        raise ConfigError(
            f"{where}: part_size must be whole bytes from 1 to {MAX_PART_BYTES} (64 MiB), "
            f"not {value!r}"
        )
    return int(value)


def check_max_uploads_per_minute(value: Any, where: str) -> int:
    if not _is_int(value) or not 0 <= value <= MAX_UPLOADS_PER_MINUTE:
        raise ConfigError(
            f"{where}: max_uploads_per_minute must be a whole number from 0 (no pacing) to "
            f"{MAX_UPLOADS_PER_MINUTE}, not {value!r}"
        )
    return int(value)


def check_delete_delay(value: Any, where: str) -> float:
    seconds = parse_duration(value)
    if seconds is None:
        raise ConfigError(
            f"{where}: delete_delay must be a duration such as 30s, 10m, 2h, 1d or a number "
            f"of seconds, not {value!r}"
        )
    return seconds


def check_metrics_address(value: Any, where: str) -> str:
    """``ADDRESS:PORT`` (``[::1]:9464``) or a bare ``PORT`` (on 127.0.0.1)."""
    from syncd.daemon.metrics_address import parse_metrics_address  # one parser for both

    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected ADDRESS:PORT as a string, not {value!r}")
    parse_metrics_address(value, where)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _globs(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of glob strings, not {value!r}")
    return tuple(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, not {value!r}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty string, not {value!r}")
    return value


# -- tables ---------------------------------------------------------------------------


def _rule(data: Any, where: str) -> PurposeRule:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table with glob and purpose")
    _refuse_unknown(data, {"glob", "purpose", "expires_after", *RULE_VECTOR_KEYS}, where)
    for key in ("glob", "purpose"):
        if key not in data:
            raise ConfigError(f"{where}: key {key!r} is missing")
    expires = data.get("expires_after")
    return PurposeRule(
        glob=_string(data["glob"], f"{where}: glob"),
        purpose=check_purpose(data["purpose"], where),
        expires_after=None if expires is None else check_expires_after(expires, where),
    )


def _rules(value: Any, where: str) -> tuple[PurposeRule, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected [[mirror.rules]] tables")
    return tuple(_rule(item, f"{where} #{n}") for n, item in enumerate(value, start=1))


# Each [[mirror]] key: the MirrorConfig field it sets and how its value is checked.
# (The daemon's keys are added here too, so a typo in any key is one clear error.)
MIRROR_KEYS: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
    "folder": ("folder", _string),
    "purpose": ("purpose", check_purpose),
    "rules": ("rules", _rules),
    "include": ("include", _globs),
    "exclude": ("exclude", _globs),
    "expires_after": ("expires_after", check_expires_after),
    "max_delete": ("max_delete", check_max_delete),
    "concurrency": ("concurrency", check_concurrency),
    "state": ("state_path", _string),
    "follow_links": ("follow_links", _bool),
    "debounce": ("debounce", check_debounce),
    "rescan_interval": ("rescan_interval", check_rescan_interval),
    "ignore": ("ignore", _globs),
    "multipart_threshold": ("multipart_threshold", check_multipart_threshold),
    "part_size": ("part_size", check_part_size),
    "max_uploads_per_minute": ("max_uploads_per_minute", check_max_uploads_per_minute),
    # Folded into MirrorConfig.vector by syncd.vector_config.fold_vector_keys.
    "vector_store": ("vector_store", check_store_name),
    "vector_store_id": ("vector_store_id", check_store_id),
    "attributes": ("attributes", check_attributes),
    "chunking": ("chunking", check_chunking),
    "indexing_deadline": ("indexing_deadline", check_indexing_deadline),
    "delete_delay": ("delete_delay", check_delete_delay),
}


def _refuse_unknown(
    data: Mapping[str, Any], known: set[str] | Mapping[str, Any], where: str
) -> None:
    for key in data:
        if key not in known:
            raise ConfigError(
                f"{where}: key {key!r} is unknown (known: {', '.join(sorted(known))})"
            )


def _mirror(
    data: Any, where: str, base: Path, limits: Limits, defaults: Mapping[str, Any]
) -> MirrorConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table")
    _refuse_unknown(data, MIRROR_KEYS, where)
    if "folder" not in data:
        raise ConfigError(f"{where}: key 'folder' is missing")
    values: dict[str, Any] = {}
    for key, raw in data.items():
        name, check = MIRROR_KEYS[key]
        values[name] = check(raw, f"{where}: {key}")
    values = fold_vector_keys(values, data.get("rules"), values.get("rules", ()), where)
    if "concurrency" in values:
        values["adaptive_concurrency"] = False
    values["folder"] = (base / Path(values["folder"]).expanduser()).absolute()
    if "state_path" in values:
        values["state_path"] = (base / Path(values["state_path"]).expanduser()).absolute()
    return MirrorConfig(limits=limits, **{**defaults, **values})


def parse_config(data: Mapping[str, Any], source: Path, env: Mapping[str, str]) -> Config:
    """Build a Config from parsed TOML; ``source`` names the file in error messages."""
    name = source.name
    _refuse_unknown(data, {"mirror", "metrics_address"}, name)
    metrics = data.get("metrics_address")
    if metrics is not None:
        metrics = check_metrics_address(metrics, f"{name}: metrics_address")
    tables = data.get("mirror", [])
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{name}: no [[mirror]] table (each names a folder to mirror)")
    limits = limits_from_env(env)
    defaults = multipart_from_env(env)
    base = source.parent.absolute()
    mirrors = tuple(
        _mirror(t, f"{name}: [[mirror]] #{n}", base, limits, defaults)
        for n, t in enumerate(tables, 1)
    )
    seen: set[Path] = set()
    for mirror in mirrors:
        if mirror.folder in seen:
            raise ConfigError(f"{name}: folder {mirror.folder} is mirrored twice")
        seen.add(mirror.folder)
    return Config(mirrors, source, metrics_address=metrics)


def load_config(path: Path, env: Mapping[str, str]) -> Config:
    """Read and check a TOML config file; every problem is one ConfigError line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    return parse_config(data, path, env)


def limits_from_env(env: Mapping[str, str]) -> Limits:
    raw = env.get("SYNCD_MAX_FILE_BYTES", "").strip()
    if not raw:
        return Limits()
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"SYNCD_MAX_FILE_BYTES must be a positive whole number, not {raw!r}")
    return Limits(max_file_bytes=int(raw))


def multipart_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """MirrorConfig fields set by SYNCD_MULTIPART_THRESHOLD / SYNCD_PART_SIZE, if any."""
    found: dict[str, Any] = {}
    for var, name, check in (
        ("SYNCD_MULTIPART_THRESHOLD", "multipart_threshold", check_multipart_threshold),
        ("SYNCD_PART_SIZE", "part_size", check_part_size),
    ):
        raw = env.get(var, "").strip()
        if raw:
            found[name] = check(int(raw) if raw.isdigit() else raw, var)
    return found


def mirror_for_folder(
    config: Config | None, folder: Path | None, env: Mapping[str, str]
) -> MirrorConfig:
    """The mirror for ``folder``: its [[mirror]] table, or defaults when there is no file.

    Without ``folder`` the file must hold exactly one mirror.
    """
    if config is None:
        if folder is None:
            raise ConfigError("name a FOLDER to mirror (or --config FILE)")
        return MirrorConfig(
            folder=folder.absolute(), limits=limits_from_env(env), **multipart_from_env(env)
        )
    if folder is None:
        if len(config.mirrors) == 1:
            return config.mirrors[0]
        raise ConfigError(f"{config.source}: several mirrors; name the FOLDER to sync")
    wanted = folder.absolute()
    for mirror in config.mirrors:
        if mirror.folder == wanted or mirror.folder.resolve() == wanted.resolve():
            return mirror
    raise ConfigError(f"{config.source}: no [[mirror]] has folder = {str(folder)!r}")
