"""Config files: [[mirror]] tables to frozen dataclasses, one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import MirrorConfig, load_config, mirror_for_folder
from syncd.errors import ConfigError
from syncd.local.rules import PurposeRule

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(text)
    return path


def test_example_config_parses() -> None:
    """config.example.toml in the repository is a valid config."""
    config = load_config(REPO / "config.example.toml", {})
    (mirror,) = config.mirrors
    assert mirror.folder == Path("/srv/datasets")
    assert mirror.rules[0] == PurposeRule("fine-tune/**/*.jsonl", "fine-tune", None)
    assert mirror.concurrency == 8 and mirror.max_delete is None


def test_several_mirrors_with_relative_paths(tmp_path: Path) -> None:
    """Relative folder and state paths are resolved against the config file's directory."""
    path = write(
        tmp_path,
        """
[[mirror]]
folder = "a"
state = "st"
exclude = ["*.tmp"]
max_delete = 5
[[mirror.rules]]
glob = "*.jsonl"
purpose = "batch"
expires_after = 3600

[[mirror]]
folder = "/abs/b"
purpose = "assistants"
""",
    )
    a, b = load_config(path, {}).mirrors
    assert a.folder == tmp_path / "a" and a.state_path == tmp_path / "st"
    assert a.exclude == ("*.tmp",) and a.max_delete == 5
    assert a.rules == (PurposeRule("*.jsonl", "batch", 3600),)
    assert b.folder == Path("/abs/b") and b.purpose == "assistants"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[mirror]]\nfolder = "a"\nconcurency = 3\n', "#1: key 'concurency' is unknown"),
        ('[[mirror]]\npurpose = "user_data"\n', "key 'folder' is missing"),
        ('[[mirror]]\nfolder = "a"\npurpose = "fun"\n', "purpose 'fun' is not one of"),
        ('[[mirror]]\nfolder = "a"\nconcurrency = 0\n', "concurrency must be 1 to 64"),
        ('[[mirror]]\nfolder = "a"\nexpires_after = 5\n', "expires_after must be"),
        ('[[mirror]]\nfolder = "a"\nmax_delete = -1\n', "max_delete must be"),
        ('[[mirror]]\nfolder = "a"\nexclude = "*.tmp"\n', "exclude: expected a list"),
        ('[[mirror]]\nfolder = "a"\nfollow_links = "yes"\n', "expected true or false"),
        ('[[mirror]]\nfolder = "a"\n[[mirror.rules]]\nglob = "*"\n', "rules #1: key 'purpose'"),
        ('[[mirror]]\nfolder = "a"\n[[mirror]]\nfolder = "a"\n', "mirrored twice"),
        ("folder = 'a'\n", "key 'folder' is unknown"),
        ("", "no [[mirror]] table"),
        ("[[mirror]\n", "syncd.toml"),  # TOML syntax error, named with the file
    ],
)
def test_mistakes_are_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    """Each mistake raises ConfigError naming the file/table/key and the problem."""
    with pytest.raises(ConfigError, match=r"syncd\.toml") as info:
        load_config(write(tmp_path, text), {})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    """A missing config file is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_config(tmp_path / "nope.toml", {})


def test_mirror_for_folder(tmp_path: Path) -> None:
    """The folder picks its [[mirror]]; no config means defaults; unknown folder is an error."""
    config = load_config(write(tmp_path, '[[mirror]]\nfolder = "a"\npurpose = "batch"\n'), {})
    assert mirror_for_folder(config, tmp_path / "a", {}).purpose == "batch"
    assert mirror_for_folder(config, None, {}).purpose == "batch"
    with pytest.raises(ConfigError, match="no \\[\\[mirror\\]\\]"):
        mirror_for_folder(config, tmp_path / "b", {})
    plain = mirror_for_folder(None, tmp_path / "b", {"SYNCD_MAX_FILE_BYTES": "100"})
    assert plain.purpose == "user_data" and plain.limits.max_file_bytes == 100


def test_overrides_ignore_none() -> None:
    """Command-line values replace config values; options not given keep them."""
    mirror = MirrorConfig(folder=Path("/x"), purpose="batch", concurrency=3)
    changed = mirror.with_overrides(purpose=None, concurrency=5)
    assert (changed.purpose, changed.concurrency) == ("batch", 5)


def test_bad_max_file_bytes_env(tmp_path: Path) -> None:
    """SYNCD_MAX_FILE_BYTES must be a positive number."""
    with pytest.raises(ConfigError, match="SYNCD_MAX_FILE_BYTES"):
        mirror_for_folder(None, tmp_path, {"SYNCD_MAX_FILE_BYTES": "lots"})


def test_pull_temp_files_are_never_mirrored_even_with_no_ignore_globs(tmp_path: Path) -> None:
    """`ignore = []` mirrors editor temp files, but never syncd pull's own .syncd-*.part."""
    from syncd.config import MirrorConfig

    mirror = MirrorConfig(folder=tmp_path, ignore=())
    assert mirror.path_filter.accepts("notes.swp")
    assert not mirror.path_filter.accepts(".syncd-0a1b2c3d4e5f.part")
    assert not mirror.path_filter.accepts("sub/.syncd-0a1b2c3d4e5f.part")
    assert mirror.path_filter.accepts("download.part")
