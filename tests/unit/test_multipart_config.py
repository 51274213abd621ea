"""Configuration and validation of large files: threshold and part size from the config
file or the environment, and which sizes each purpose may have."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import (
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_PART_SIZE,
    mirror_for_folder,
    parse_config,
)
from syncd.errors import ConfigError
from syncd.local.validate import Limits, check_size


def test_defaults_are_256_mb_and_64_mib(tmp_path: Path) -> None:
    """Without a key or variable, files from 256 MB on go in 64 MiB parts."""
    mirror = mirror_for_folder(None, tmp_path, {})
    assert mirror.multipart_threshold == DEFAULT_MULTIPART_THRESHOLD == 256_000_000
    assert mirror.part_size == DEFAULT_PART_SIZE == 64 * 1024 * 1024


def test_environment_sets_the_defaults_and_the_file_wins(tmp_path: Path) -> None:
    """SYNCD_MULTIPART_THRESHOLD / SYNCD_PART_SIZE apply unless the [[mirror]] sets the key."""
    env = {"SYNCD_MULTIPART_THRESHOLD": "1000", "SYNCD_PART_SIZE": "300"}
    plain = mirror_for_folder(None, tmp_path, env)
    assert (plain.multipart_threshold, plain.part_size) == (1000, 300)
    data = {"mirror": [{"folder": "a", "part_size": 500}]}
    (mirror,) = parse_config(data, tmp_path / "syncd.toml", env).mirrors
    assert (mirror.multipart_threshold, mirror.part_size) == (1000, 500)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("part_size", 0, "part_size must be whole bytes from 1 to 67108864"),
        ("part_size", 64 * 1024 * 1024 + 1, "part_size must be"),
        ("multipart_threshold", "big", "multipart_threshold must be a whole number"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, key: str, value: object, message: str) -> None:
    """A part size over 64 MiB or a non-number threshold is one clear config error."""
    with pytest.raises(ConfigError, match=message):
        parse_config({"mirror": [{"folder": "a", key: value}]}, tmp_path / "s.toml", {})


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    """A bad SYNCD_PART_SIZE is refused naming the variable."""
    with pytest.raises(ConfigError, match="SYNCD_PART_SIZE: part_size must be"):
        mirror_for_folder(None, tmp_path, {"SYNCD_PART_SIZE": "lots"})


def test_sizes_per_purpose() -> None:
    """Above 512 MB only Uploads API purposes pass, up to 8 GB; others get a clear reason."""
    limits = Limits()
    big = 600_000_000
    for purpose in ("assistants", "fine-tune", "vision"):
        assert check_size(big, purpose, limits) is None
    for purpose in ("user_data", "evals"):
        reason = check_size(big, purpose, limits)
        assert reason is not None
        assert "over the 512 MB limit per file for purpose" in reason
        assert "Uploads API" in reason
    assert "limit for batch" in str(check_size(big, "batch", limits))
    reason = check_size(8_000_000_001, "assistants", limits)
    assert reason is not None and "8 GB limit of the Uploads API" in reason
    assert check_size(8_000_000_000, "assistants", limits) is None
