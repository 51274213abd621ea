"""The vector store keys of a [[mirror]] (and its rules): parsed into a VectorConfig, every
mistake one ConfigError naming the table, the key and the limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.errors import ConfigError
from syncd.vector_api import Chunking
from syncd.vector_config import VectorConfig, VectorRule, with_store

HEAD = '[[mirror]]\nfolder = "/srv/docs"\n'


def parse(tmp_path: Path, body: str) -> VectorConfig | None:
    path = tmp_path / "syncd.toml"
    path.write_text(HEAD + body)
    (mirror,) = load_config(path, {}).mirrors
    return mirror.vector


def test_full_vector_config(tmp_path: Path) -> None:
    """Store, attributes, chunking, deadline and per-rule attributes/chunking are kept."""
    vector = parse(
        tmp_path,
        """
vector_store = "docs"
attributes = { team = "docs", level = 2, public = true }
chunking = { max_tokens = 1200, overlap = 600 }
indexing_deadline = 600
[[mirror.rules]]
glob = "fine-tune/**/*.jsonl"
purpose = "fine-tune"
[[mirror.rules]]
glob = "handbook/**"
purpose = "assistants"
attributes = { team = "hr", kind = "handbook" }
chunking = "auto"
""",
    )
    assert vector == VectorConfig(
        name="docs",
        attributes=(("level", 2), ("public", True), ("team", "docs")),
        chunking=Chunking(1200, 600),
        indexing_deadline=600.0,
        rules=(
            VectorRule("fine-tune/**/*.jsonl", "fine-tune"),
            VectorRule("handbook/**", "assistants", (("kind", "handbook"), ("team", "hr")), "auto"),
        ),
    )
    assert vector.for_path("handbook/a.md") == (
        {"level": 2, "public": True, "team": "hr", "kind": "handbook"},
        None,
    )
    assert vector.for_path("x.md") == (
        {"level": 2, "public": True, "team": "docs"},
        Chunking(1200, 600),
    )


def test_no_store_means_no_vector_config(tmp_path: Path) -> None:
    """A mirror without vector keys has vector None (the Files side alone)."""
    assert parse(tmp_path, "") is None


def test_store_id_alone(tmp_path: Path) -> None:
    """vector_store_id names an existing store; defaults: auto chunking, 30 min deadline."""
    vector = parse(tmp_path, 'vector_store_id = "vs_abc123"\n')
    assert vector == VectorConfig(store_id="vs_abc123")
    assert vector.indexing_deadline == 1800.0 and vector.chunking is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('vector_store = "a"\nvector_store_id = "vs_a"\n', "not both"),
        ('attributes = { a = "b" }\n', "attributes need a vector store"),
        ('vector_store_id = "docs"\n', "expected a vector store id like 'vs_abc123', not 'docs'"),
        ('vector_store = ""\n', "vector_store: expected the store's name"),
        ('vector_store = "d"\nattributes = { path = "x" }\n', "attribute 'path' is syncd's own"),
        ('vector_store = "d"\nattributes = { syncd_owner = "x" }\n', "syncd's own"),
        (
            'vector_store = "d"\nattributes = { '
            + ", ".join(f"k{i} = 1" for i in range(14))
            + " }\n",
            "at most 13 attributes",
        ),
        (
            'vector_store = "d"\nattributes = { ' + "k" * 65 + " = 1 }\n",
            "has 65 characters (at most 64)",
        ),
        (
            'vector_store = "d"\nattributes = { a = "' + "v" * 513 + '" }\n',
            "at most 512 characters, not 513",
        ),
        (
            'vector_store = "d"\nattributes = { a = [1] }\n',
            "is not a string, a number or a boolean",
        ),
        (
            'vector_store = "d"\nattributes = { a = { b = 1 } }\n',
            "is not a string, a number or a boolean",
        ),
        (
            'vector_store = "d"\nattributes = { a = 1979-05-27 }\n',
            "is not a string, a number or a boolean",
        ),
        ('vector_store = "d"\nattributes = { a = nan }\n', "is not a finite number"),
        ('vector_store = "d"\nattributes = "x"\n', "must be a table"),
        (
            'vector_store = "d"\nchunking = { max_tokens = 99, overlap = 0 }\n',
            "max_tokens must be a whole number from 100 to 4096, not 99",
        ),
        ('vector_store = "d"\nchunking = { max_tokens = 4097, overlap = 0 }\n', "not 4097"),
        (
            'vector_store = "d"\nchunking = { max_tokens = 800, overlap = 401 }\n',
            "overlap 401 is more than half of max_tokens 800",
        ),
        (
            'vector_store = "d"\nchunking = { max_tokens = 800, overlap = -1 }\n',
            "overlap must be a whole number >= 0",
        ),
        (
            'vector_store = "d"\nchunking = { max_tokens = 800 }\n',
            'expected "auto" or { max_tokens = N, overlap = M }',
        ),
        ('vector_store = "d"\nchunking = "static"\n', 'expected "auto"'),
        ('vector_store = "d"\nindexing_deadline = 0\n', "indexing_deadline must be seconds from 1"),
        ('vector_store = "d"\nindexing_deadline = true\n', "indexing_deadline must be seconds"),
        ('vector_store = "d"\npurpose = "batch"\n', "no file would be attached"),
        (
            'vector_store = "d"\n[[mirror.rules]]\nglob = "*.jsonl"\npurpose = "fine-tune"\n'
            "attributes = { a = 1 }\n",
            "rules #1: files of purpose fine-tune are never attached",
        ),
        (
            'vector_store = "d"\n[[mirror.rules]]\nglob = "*.md"\npurpose = "assistants"\n'
            "chunking = { max_tokens = 50, overlap = 0 }\n",
            "rules #1: chunking: max_tokens must be",
        ),
        (
            'vector_store = "d"\nattributes = { '
            + ", ".join(f"m{i} = 1" for i in range(8))
            + " }\n"
            '[[mirror.rules]]\nglob = "*.md"\npurpose = "assistants"\n'
            "attributes = { " + ", ".join(f"r{i} = 1" for i in range(8)) + " }\n",
            "rules #1: with the mirror's attributes its files would have 16",
        ),
        (
            '[[mirror.rules]]\nglob = "*.md"\npurpose = "assistants"\nattributes = { a = 1 }\n',
            "[[mirror.rules]] attributes need a vector store",
        ),
        ('vector_store = "d"\nchunkin = "auto"\n', "key 'chunkin' is unknown"),
    ],
)
def test_bad_vector_keys(tmp_path: Path, body: str, message: str) -> None:
    """Each mistake is one ConfigError naming the file, the table and what is wrong."""
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, body)
    assert message in str(caught.value)
    assert str(caught.value).startswith("syncd.toml: [[mirror]] #1")


def test_command_line_store() -> None:
    """--vector-store / --vector-store-id set the store over (or without) the file's."""
    by_name = with_store(None, "user_data", (), name="docs", store_id=None)
    assert by_name == VectorConfig(name="docs")
    by_id = with_store(by_name, "user_data", (), name=None, store_id="vs_x1")
    assert by_id is not None and by_id.store_id == "vs_x1" and by_id.name is None
    assert with_store(by_name, "user_data", (), name=None, store_id=None) is by_name
    with pytest.raises(ConfigError, match="not both"):
        with_store(None, "user_data", (), name="a", store_id="vs_a")
    with pytest.raises(ConfigError, match="no file would be attached"):
        with_store(None, "fine-tune", (), name="a", store_id=None)


def test_example_config_documents_the_vector_keys(tmp_path: Path) -> None:
    """config.example.toml shows every vector key; uncommented, its block parses."""
    example = (Path(__file__).resolve().parents[2] / "config.example.toml").read_text()
    for key in ("vector_store", "vector_store_id", "attributes", "chunking", "indexing_deadline"):
        assert f"# {key} = " in example, key
    block = [
        line.removeprefix("# ")
        for line in example.splitlines()
        if line.startswith(("# vector_store = ", "# attributes = ", "# chunking = "))
        or line.startswith("# indexing_deadline = ")
    ]
    vector = parse(tmp_path, "\n".join(block) + "\n")
    assert vector is not None and vector.name == "datasets" and vector.indexing_deadline == 1800
