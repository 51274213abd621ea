"""tests/apispec.py: our reference schemas, the SDK check, and the drift comparison.

None of these needs ../shared beside the clone; the comparison with the published spec
itself is in test_reference_drift.py.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import apispec
import jsonschema
import pydantic
import pytest
from referencing.jsonschema import DRAFT202012

FILE: dict[str, Any] = {
    "id": "file-abc123",
    "object": "file",
    "bytes": 120000,
    "created_at": 1677610602,
    "filename": "mydata.jsonl",
    "purpose": "fine-tune",
    "status": "processed",
}
COUNTS = {"in_progress": 0, "completed": 2, "failed": 0, "cancelled": 0, "total": 2}
STORE: dict[str, Any] = {
    "id": "vs_abc123",
    "object": "vector_store",
    "created_at": 1698107661,
    "name": "datasets",
    "usage_bytes": 123456,
    "file_counts": COUNTS,
    "status": "completed",
    "last_active_at": 1698107661,
    "metadata": {"mirror": "syncd"},
}
STORE_FILE: dict[str, Any] = {
    "id": "file-abc123",
    "object": "vector_store.file",
    "usage_bytes": 1234,
    "created_at": 1698107661,
    "vector_store_id": "vs_abc123",
    "status": "completed",
    "last_error": None,
    "chunking_strategy": {
        "type": "static",
        "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
    },
    "attributes": {"path": "docs/a.md", "sha256_prefix": "ab12", "size": 3, "mirrored": True},
}


def page(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [item],
        "first_id": item["id"],
        "last_id": item["id"],
        "has_more": False,
    }


# One valid answer per schema the SDK models: the published examples, made complete.
ANSWERS: dict[str, dict[str, Any]] = {
    "OpenAIFile": FILE,
    "ListFilesResponse": page(FILE),
    "DeleteFileResponse": {"id": "file-abc123", "object": "file", "deleted": True},
    "Error": {
        "message": "No such File object",
        "type": "invalid_request_error",
        "param": "id",
        "code": None,
    },
    "ErrorResponse": {
        "error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}
    },
    "Upload": {
        "id": "upload_abc123",
        "object": "upload",
        "bytes": 120000,
        "created_at": 1719184911,
        "filename": "mydata.jsonl",
        "purpose": "fine-tune",
        "status": "completed",
        "expires_at": 1719188511,
        "file": FILE,
    },
    "UploadPart": {
        "id": "part_def456",
        "object": "upload.part",
        "created_at": 1719185911,
        "upload_id": "upload_abc123",
    },
    "VectorStoreObject": STORE,
    "ListVectorStoresResponse": page(STORE),
    "DeleteVectorStoreResponse": {
        "id": "vs_abc123",
        "object": "vector_store.deleted",
        "deleted": True,
    },
    "VectorStoreFileObject": STORE_FILE,
    "ListVectorStoreFilesResponse": page(STORE_FILE),
    "DeleteVectorStoreFileResponse": {
        "id": "file-abc123",
        "object": "vector_store.file.deleted",
        "deleted": True,
    },
    "VectorStoreFileBatchObject": {
        "id": "vsfb_123",
        "object": "vector_store.files_batch",
        "created_at": 1698107661,
        "vector_store_id": "vs_abc123",
        "status": "in_progress",
        "file_counts": COUNTS,
    },
}

REQUESTS: dict[str, dict[str, Any]] = {
    "CreateUploadRequest": {
        "filename": "big.jsonl",
        "purpose": "batch",
        "bytes": 2147483648,
        "mime_type": "text/jsonl",
        "expires_after": {"anchor": "created_at", "seconds": 3600},
    },
    "CompleteUploadRequest": {"part_ids": ["part_1", "part_2"], "md5": "0" * 32},
    "CreateVectorStoreRequest": {
        "name": "datasets",
        "expires_after": {"anchor": "last_active_at", "days": 7},
    },
    "UpdateVectorStoreRequest": {"name": None, "expires_after": None, "metadata": None},
    "CreateVectorStoreFileRequest": {"file_id": "file-abc123", "attributes": {"path": "a.md"}},
    "CreateVectorStoreFileBatchRequest": {
        "files": [{"file_id": "file-1", "chunking_strategy": {"type": "auto"}}],
    },
    "UpdateVectorStoreFileAttributesRequest": {"attributes": {"path": "b.md", "n": 2}},
}


@pytest.fixture(autouse=True)
def _own_tally(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests' own validate() calls stay out of the run's spec-check count."""
    monkeypatch.setattr(apispec, "TALLY", apispec.SpecCheckTally())


@pytest.mark.parametrize("file_name", sorted(apispec.REFERENCE_DOCUMENTS))
def test_reference_document_is_a_valid_2020_12_schema(file_name: str) -> None:
    """Each document in tests/reference/ passes the JSON Schema 2020-12 metaschema."""
    document = apispec.reference_documents()[file_name]
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)


@pytest.mark.parametrize("name", sorted(apispec.reference_schemas()))
def test_each_reference_schema_is_valid_and_its_refs_resolve(name: str) -> None:
    """Each of our schemas is a valid 2020-12 schema and every $ref in it resolves."""
    file_name, schema = apispec.reference_schemas()[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    document_id = apispec.reference_documents()[file_name]["$id"]
    resolver = apispec._reference_registry().resolver(base_uri=document_id)
    for ref in _refs(schema):
        assert resolver.lookup(ref).contents, ref
    assert DRAFT202012.id_of(apispec.reference_documents()[file_name]) == document_id


def test_reference_documents_name_what_they_leave_out() -> None:
    """x-not-transcribed gives a reason for each published schema we did not write."""
    for document in apispec.reference_documents().values():
        for name, why in document["x-not-transcribed"].items():
            assert name not in apispec.reference_schemas()
            assert why.strip()


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_valid_answer_passes_our_schema_and_the_sdk(name: str) -> None:
    """A complete answer of each kind passes both our schema and the SDK's strict model."""
    apispec.check_reference(name, ANSWERS[name])
    apispec.check_sdk(name, ANSWERS[name])


def test_every_answer_has_an_sdk_model() -> None:
    """The SDK check covers exactly the answers; each model is the SDK's own type."""
    assert set(apispec.SDK_MODELS) == set(ANSWERS)
    for name, model in apispec.SDK_MODELS.items():
        origin = model.__pydantic_generic_metadata__["origin"] or model  # SyncCursorPage[...]
        assert origin.__module__.startswith("openai.") or name == "ErrorResponse"


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_request_shapes_pass_our_schema(name: str) -> None:
    """The request shapes we wrote accept a request syncd would send."""
    apispec.validate(name, REQUESTS[name])


@pytest.mark.parametrize(
    ("name", "key"),
    [
        (name, key)
        for name in sorted(ANSWERS)
        for key in apispec.reference_schemas()[name][1].get("required", [])
    ],
)
def test_our_schema_rejects_an_answer_missing_a_required_key(name: str, key: str) -> None:
    """Dropping any required key of an answer fails our schema."""
    answer = {k: v for k, v in ANSWERS[name].items() if k != key}
    with pytest.raises(jsonschema.ValidationError):
        apispec.check_reference(name, answer)


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("OpenAIFile", "bytes", "120000"),
        ("OpenAIFile", "object", "files"),
        ("OpenAIFile", "purpose", "training"),
        ("OpenAIFile", "status", "done"),
        ("ListFilesResponse", "has_more", "false"),
        ("DeleteFileResponse", "deleted", "true"),
        ("ErrorResponse", "error", "not found"),
        ("Upload", "status", "uploading"),
        ("UploadPart", "object", "part"),
        ("VectorStoreFileObject", "status", "ready"),
        ("VectorStoreFileObject", "last_error", {"code": "oops", "message": "m"}),
        ("VectorStoreObject", "file_counts", {"total": 2}),
        ("VectorStoreFileBatchObject", "object", "vector_store.file_batch"),
    ],
)
def test_wrong_value_fails_our_schema_and_the_sdk(name: str, key: str, value: Any) -> None:
    """A wrong type or enum value in an answer fails both checks, independently."""
    answer = dict(ANSWERS[name], **{key: value})
    with pytest.raises(jsonschema.ValidationError):
        apispec.check_reference(name, answer)
    with pytest.raises(pydantic.ValidationError):
        apispec.check_sdk(name, answer)


def test_sdk_check_is_strict_where_json_schema_is_not() -> None:
    """3.0 is an integer to JSON Schema but not to the SDK's strict model: validate() fails."""
    answer = dict(FILE, bytes=120000.0)
    apispec.check_reference("OpenAIFile", answer)
    with pytest.raises(pydantic.ValidationError):
        apispec.validate("OpenAIFile", answer)


@pytest.mark.parametrize("file_value", ["file-abc123", 7])
def test_a_file_must_be_an_object(file_value: Any) -> None:
    """Our OpenAIFile adds `type: object`: an Upload's file that is no object fails."""
    with pytest.raises(jsonschema.ValidationError):
        apispec.check_reference("Upload", dict(ANSWERS["Upload"], file=file_value))


def test_pending_upload_has_a_null_file() -> None:
    """An Upload whose file is null (not completed yet) passes all checks."""
    apispec.validate("Upload", dict(ANSWERS["Upload"], status="pending", file=None))


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        ("OpenAIFile", dict(FILE, purpose="evals")),
        ("ListFilesResponse", page(dict(FILE, purpose="evals"))),
        ("Upload", dict(ANSWERS["Upload"], file=dict(FILE, purpose="evals"))),
    ],
)
def test_evals_purpose_passes_as_the_one_known_gap(name: str, answer: dict[str, Any]) -> None:
    """A file of purpose evals validates (the enum gap), and is left unchanged."""
    before = copy.deepcopy(answer)
    apispec.validate(name, answer)
    assert answer == before
    with pytest.raises(jsonschema.ValidationError):
        apispec.check_reference(name, answer)


def test_evals_stand_in_does_not_hide_other_faults() -> None:
    """A file of purpose evals with a wrong field still fails validate()."""
    with pytest.raises(jsonschema.ValidationError):
        apispec.validate("OpenAIFile", dict(FILE, purpose="evals", status="done"))


def test_validate_skips_and_counts_the_spec_check_without_shared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without ../shared, validate() still checks, skips the spec check and counts it."""
    monkeypatch.setattr(apispec, "SHARED_SPEC_DIR", tmp_path / "absent")
    apispec.validate("OpenAIFile", FILE)
    apispec.validate("DeleteFileResponse", ANSWERS["DeleteFileResponse"])
    with pytest.raises(jsonschema.ValidationError):
        apispec.validate("OpenAIFile", dict(FILE, status="done"))
    assert apispec.TALLY.run == 0
    assert len(apispec.TALLY.skipped_in) == 2
    assert apispec.TALLY.skipped_in[0].endswith(
        "::test_validate_skips_and_counts_the_spec_check_without_shared"
    )
    assert apispec.published_absent_reason() == "../shared/openai-files-api not beside the clone"
    assert apispec.tally_line(skipped_tests=3).startswith(
        "skipped for ../shared/openai-files-api not beside the clone: 3 tests, "
        "and the spec check of 2 answers in 1 tests"
    )


def test_validate_runs_the_spec_check_where_shared_is_present(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With an extract beside the clone, validate() checks against it as well."""
    spec_dir = tmp_path / "openai-files-api"
    spec_dir.mkdir()
    spec = "components:\n  schemas:\n    OpenAIFile:\n      required: [id, extra]\n"
    (spec_dir / "openapi-files.yaml").write_text(spec, encoding="utf-8")
    monkeypatch.setattr(apispec, "SHARED_SPEC_DIR", spec_dir)
    with pytest.raises(jsonschema.ValidationError, match="'extra' is a required property"):
        apispec.validate("OpenAIFile", FILE)
    apispec.validate("OpenAIFile", dict(FILE, extra=1))
    assert apispec.TALLY.run == 1 and apispec.TALLY.skipped_in == []
    assert "openapi-vector-stores.yaml not beside the clone" in apispec.published_absent_reason()


def test_differences_are_none_for_a_faithful_copy() -> None:
    """A copy with the spec's nullable written as a union, and annotations dropped, agrees."""
    published = {
        "type": "object",
        "description": "d",
        "properties": {
            "name": {"type": "string", "nullable": True, "x-stainless-const": True},
            "file": {
                "allOf": [
                    {"$ref": "#/components/schemas/F"},
                    {"nullable": True, "description": "x"},
                ]
            },
            "status": {"type": "string", "enum": ["b", "a"]},
        },
        "required": ["status", "name"],
        "discriminator": {"propertyName": "status"},
    }
    ours = {
        "type": "object",
        "properties": {
            "name": {"type": ["null", "string"]},
            "file": {"anyOf": [{"$ref": "#/$defs/F"}, {"type": "null"}]},
            "status": {"type": "string", "enum": ["a", "b"]},
        },
        "required": ["name", "status"],
    }
    assert apispec.schema_differences(ours, published) == []


@pytest.mark.parametrize(
    ("change", "node", "keyword"),
    [
        (lambda s: s["required"].remove("id"), "", "required"),
        (lambda s: s["properties"]["id"].update(type="integer"), "/properties/id", "type"),
        (lambda s: s["properties"]["kind"]["enum"].append("c"), "/properties/kind", "enum"),
        (lambda s: s["properties"].pop("kind"), "", "properties"),
        (lambda s: s.update(additionalProperties=True), "", "additionalProperties"),
        (lambda s: s["properties"]["n"].update(maximum=5), "/properties/n", "maximum"),
        (lambda s: s["properties"]["ref"].update({"$ref": "#/$defs/G"}), "/properties/ref", "$ref"),
    ],
)
def test_differences_catch_each_kind_of_drift(change: Any, node: str, keyword: str) -> None:
    """A dropped required key, a changed type, enum, bound, name or ref is reported."""
    published = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "n": {"type": "integer", "maximum": 4},
            "ref": {"$ref": "#/components/schemas/F"},
        },
        "required": ["id", "kind"],
    }
    ours = copy.deepcopy(published)
    change(ours)
    found = [(d.node, d.keyword) for d in apispec.schema_differences(ours, published)]
    assert (node, keyword) in found


def test_marked_nodes_finds_the_declared_differences() -> None:
    """$comment 'Differs from the spec: ...' marks exactly the nodes it sits on."""
    ours = apispec.reference_schemas()["OpenAIFile"][1]
    assert apispec.marked_nodes(ours) == {""}
    assert apispec.marked_nodes(apispec.reference_schemas()["Upload"][1]) == set()


def _refs(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        own = [schema["$ref"]] if "$ref" in schema else []
        return own + [ref for value in schema.values() for ref in _refs(value)]
    if isinstance(schema, list):
        return [ref for value in schema for ref in _refs(value)]
    return []
