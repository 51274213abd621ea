"""Our schemas in tests/reference/ against the published spec in ../shared/openai-files-api/.

Where that folder is not beside the clone, every test here is skipped with the same
reason, and the run's summary counts them (tests/conftest.py).
"""

from __future__ import annotations

from typing import Any

import apispec
import pytest


def published_schemas() -> dict[str, dict[str, Any]]:
    """Each published extract's components/schemas, by file name; skip where absent.

    Called from each test's body, so that every skip has this one location and ``-ra``
    folds them into one line with their count.
    """
    paths = [apispec.SHARED_SPEC_DIR / name for name in apispec.REFERENCE_DOCUMENTS.values()]
    if not all(path.is_file() for path in paths):
        pytest.skip(apispec.published_absent_reason())
    return {path.name: apispec.load_published(path)["components"]["schemas"] for path in paths}


@pytest.mark.parametrize("file_name", sorted(apispec.REFERENCE_DOCUMENTS))
def test_reference_covers_every_published_schema(file_name: str) -> None:
    """Each schema of the extract is ours, or named in x-not-transcribed; and ours exist there."""
    published = published_schemas()
    extract = apispec.REFERENCE_DOCUMENTS[file_name]
    ours = apispec.reference_schemas()
    left_out = apispec.reference_documents()[file_name]["x-not-transcribed"]
    assert sorted(set(published[extract]) - set(ours) - set(left_out)) == []
    assert sorted(set(left_out) - set(published[extract])) == []
    written_here = {name for name, (doc, _) in ours.items() if doc == file_name}
    assert sorted(written_here - set(published[extract])) == []


@pytest.mark.parametrize("name", sorted(apispec.reference_schemas()))
def test_reference_schema_agrees_with_the_published_one(name: str) -> None:
    """Names, types, enums, required keys and bounds match the spec, but where marked."""
    published = published_schemas()
    ours = apispec.reference_schemas()[name][1]
    marked = apispec.marked_nodes(ours)
    extracts = [extract for extract, schemas in published.items() if name in schemas]
    assert extracts, f"{name} is in no published extract"
    for extract in extracts:
        differences = apispec.schema_differences(ours, published[extract][name])
        unmarked = [str(d) for d in differences if d.node not in marked]
        assert unmarked == [], f"{name} drifted from {extract}"
        stale = sorted(marked - {d.node for d in differences})
        assert stale == [], f"{name}: marked '{apispec.DIFFERS_MARKER}' but agrees with {extract}"
