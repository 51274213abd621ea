"""Validate API answers in tests: our schemas, the official SDK's models, the published spec.

``validate(schema_name, instance)`` checks one decoded JSON body three ways:

1. against ``#/$defs/<schema_name>`` of our own JSON Schema documents in
   ``tests/reference/`` (2020-12, written from the published reference): always;
2. through the official ``openai`` SDK's own typed model of that answer
   (``openai.types.FileObject``, ``SyncCursorPage[FileObject]`` for a list page, ...),
   validated by pydantic in strict mode, so that ``"3"`` or ``3.0`` for an integer fails:
   always, for every answer in ``SDK_MODELS`` (request shapes have no SDK model);
3. against ``#/components/schemas/<schema_name>`` of the published spec extract in
   ``../shared/openai-files-api/`` beside the clone (its OpenAPI 3.0 ``nullable`` read as
   a union with null), only where that folder exists.
   Where it does not, this check alone is skipped and counted in ``TALLY``; the test goes
   on, and ``tests/conftest.py`` states the count at the end of the run.

A failure raises ``jsonschema.ValidationError`` (1, 3) or ``pydantic.ValidationError`` (2).

The one known gap, kept on purpose: the spec's ``OpenAIFile.purpose`` enum (and the SDK's
``FileObject.purpose``) lacks ``evals`` although ``CreateFileRequest`` accepts it and
servers answer with it. A file of purpose ``evals`` is validated with that one field
stood in for by ``user_data``, after checking that ``evals`` is an upload purpose.

``schema_differences(ours, published)`` lists where one of our schemas departs from the
spec's (names, types, enums, required keys, bounds, ``additionalProperties``);
tests/unit/test_reference_drift.py runs it where the spec is present.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import yaml
from openai.pagination import SyncCursorPage
from openai.types import (
    ErrorObject,
    FileDeleted,
    FileObject,
    Upload,
    VectorStore,
    VectorStoreDeleted,
)
from openai.types.uploads import UploadPart
from openai.types.vector_stores import (
    VectorStoreFile,
    VectorStoreFileBatch,
    VectorStoreFileDeleted,
)
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

TESTS_DIR = Path(__file__).resolve().parent
REFERENCE_DIR = TESTS_DIR / "reference"
SHARED_SPEC_DIR = TESTS_DIR.parent.parent / "shared" / "openai-files-api"
SHARED_SPEC_LABEL = "../shared/openai-files-api"
SPEC_ABSENT_REASON = f"{SHARED_SPEC_LABEL} not beside the clone"
DIFFERS_MARKER = "Differs from the spec:"

# Each of our documents, and the published extract it was written from.
REFERENCE_DOCUMENTS: dict[str, str] = {
    "files_api.json": "openapi-files.yaml",
    "vector_stores_api.json": "openapi-vector-stores.yaml",
}


class _ErrorEnvelope(pydantic.BaseModel):
    """``{"error": {...}}``: the SDK reads the ``error`` key itself and types its content."""

    error: ErrorObject


# Every answer the tests validate (and the Vector Stores answers to come), with the type
# the SDK itself parses it into (see its resources/*.py return types).
SDK_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "OpenAIFile": FileObject,
    "ListFilesResponse": SyncCursorPage[FileObject],
    "DeleteFileResponse": FileDeleted,
    "Error": ErrorObject,
    "ErrorResponse": _ErrorEnvelope,
    "Upload": Upload,
    "UploadPart": UploadPart,
    "VectorStoreObject": VectorStore,
    "ListVectorStoresResponse": SyncCursorPage[VectorStore],
    "DeleteVectorStoreResponse": VectorStoreDeleted,
    "VectorStoreFileObject": VectorStoreFile,
    "ListVectorStoreFilesResponse": SyncCursorPage[VectorStoreFile],
    "DeleteVectorStoreFileResponse": VectorStoreFileDeleted,
    "VectorStoreFileBatchObject": VectorStoreFileBatch,
}


@dataclasses.dataclass
class SpecCheckTally:
    """How many answers were also checked against the published spec, and which were not."""

    run: int = 0
    skipped_in: list[str] = dataclasses.field(default_factory=list)  # one test id per skip


TALLY = SpecCheckTally()


def validate(schema_name: str, instance: Any) -> None:
    """Check ``instance`` with our schema, the SDK's model and, where present, the spec."""
    instance = _evals_stood_in(schema_name, instance)
    check_reference(schema_name, instance)
    check_sdk(schema_name, instance)
    if published_spec_present(schema_name):
        check_published(schema_name, instance)
        TALLY.run += 1
    else:
        TALLY.skipped_in.append(_current_test())


def check_reference(schema_name: str, instance: Any) -> None:
    """Validate against ``#/$defs/<schema_name>`` of our documents in tests/reference/."""
    document_id = reference_document_id(schema_name)
    schema = {"$ref": f"{document_id}#/$defs/{schema_name}"}
    jsonschema.Draft202012Validator(schema, registry=_reference_registry()).validate(instance)


def check_sdk(schema_name: str, instance: Any) -> None:
    """Parse with the SDK's own model of the answer, strictly; no-op for request shapes."""
    model = SDK_MODELS.get(schema_name)
    if model is not None:
        model.model_validate(instance, strict=True)


def check_published(schema_name: str, instance: Any) -> None:
    """Validate against ``#/components/schemas/<schema_name>`` of the published extract."""
    path = published_spec_path(schema_name)
    schema = {"$ref": f"{path.as_uri()}#/components/schemas/{schema_name}"}
    validator = jsonschema.Draft202012Validator(schema, registry=_published_registry(path))
    validator.validate(instance)


# --- our documents ---------------------------------------------------------------------


@functools.cache
def reference_documents() -> dict[str, dict[str, Any]]:
    """Our schema documents, by file name."""
    return {
        name: json.loads((REFERENCE_DIR / name).read_text(encoding="utf-8"))
        for name in REFERENCE_DOCUMENTS
    }


def reference_schemas() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every schema we wrote: name -> (the document's file name, the schema)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for file_name, document in reference_documents().items():
        for name, schema in document["$defs"].items():
            if name in found:
                raise ValueError(f"{name} is defined in {found[name][0]} and {file_name}")
            found[name] = (file_name, schema)
    return found


def reference_document_id(schema_name: str) -> str:
    """The ``$id`` of the document of ours that defines ``schema_name`` (KeyError if none)."""
    file_name = reference_schemas()[schema_name][0]
    document_id: str = reference_documents()[file_name]["$id"]
    return document_id


@functools.cache
def _reference_registry() -> Registry:
    registry: Registry = Registry()
    for document in reference_documents().values():
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        registry = registry.with_resource(document["$id"], resource)
    return registry


# --- the published spec, beside the clone ----------------------------------------------


def published_spec_path(schema_name: str) -> Path:
    """The published extract our definition of ``schema_name`` was written from."""
    return SHARED_SPEC_DIR / REFERENCE_DOCUMENTS[reference_schemas()[schema_name][0]]


def published_spec_present(schema_name: str) -> bool:
    """Whether the published extract for ``schema_name`` is beside the clone."""
    return published_spec_path(schema_name).is_file()


def published_absent_reason() -> str:
    """Why a check against the published spec is skipped here (a fixed text, so it groups)."""
    if not SHARED_SPEC_DIR.is_dir():
        return SPEC_ABSENT_REASON
    missing = [n for n in REFERENCE_DOCUMENTS.values() if not (SHARED_SPEC_DIR / n).is_file()]
    return f"{SHARED_SPEC_LABEL}/{', '.join(missing)} not beside the clone"


@functools.cache
def load_published(path: Path) -> dict[str, Any]:
    """One published extract, parsed (YAML)."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


@functools.cache
def _published_registry(path: Path) -> Registry:
    document = _nullable_rewritten(load_published(path))
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry = Registry().with_resource(path.as_uri(), resource)
    return registry


# Keywords that only annotate: a branch of nothing else but `nullable` is a null.
_ANNOTATIONS = {"description", "title", "example", "default", "deprecated", "format", "$comment"}


def _nullable_rewritten(value: Any) -> Any:
    """The spec with every OpenAPI 3.0 ``nullable`` read as 2020-12 (see ``_from_openapi``).

    The spec declares OpenAPI 3.1 (JSON Schema 2020-12), which has no ``nullable``; read
    literally, ``UpdateVectorStoreRequest.name: null`` would fail although the spec means
    to allow it.
    """
    if isinstance(value, dict):
        return {key: _nullable_rewritten(sub) for key, sub in _from_openapi(value).items()}
    if isinstance(value, list):
        return [_nullable_rewritten(sub) for sub in value]
    return value


def _from_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """``type: T, nullable: true`` -> ``type: [T, null]``; ``allOf: [A, {nullable}]`` -> anyOf."""
    schema = dict(schema)
    if schema.pop("nullable", False) is True and isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
    branches = schema.get("allOf", [])
    nullable = [
        b for b in branches if b.get("nullable") is True and set(b) <= {"nullable"} | _ANNOTATIONS
    ]
    if len(branches) == 2 and len(nullable) == 1:
        del schema["allOf"]
        other = branches[0] if branches[1] is nullable[0] else branches[1]
        schema["anyOf"] = [other, {"type": "null"}]
    return schema


# --- the evals gap ---------------------------------------------------------------------


def _evals_stood_in(schema_name: str, instance: Any) -> Any:
    """A copy of ``instance`` whose files of purpose ``evals`` say ``user_data`` instead."""
    upload_purposes = reference_schemas()["CreateFileRequest"][1]["properties"]["purpose"]
    assert "evals" in upload_purposes["enum"], "evals is no upload purpose: drop the stand-in"
    instance = copy.deepcopy(instance)
    for file_obj in _files_in(schema_name, instance):
        if isinstance(file_obj, dict) and file_obj.get("purpose") == "evals":
            file_obj["purpose"] = "user_data"  # stands in for the enum gap only
    return instance


def _files_in(schema_name: str, instance: Any) -> list[Any]:
    if not isinstance(instance, dict):
        return []
    if schema_name == "OpenAIFile":
        return [instance]
    if schema_name == "ListFilesResponse" and isinstance(instance.get("data"), list):
        return list(instance["data"])
    if schema_name == "Upload" and isinstance(instance.get("file"), dict):
        return [instance["file"]]
    return []


# --- the run's tally -------------------------------------------------------------------


def _current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]


def tally_line(skipped_tests: int) -> str:
    """One line for the end of the run: what was checked against the spec, or skipped."""
    answers, in_tests = len(TALLY.skipped_in), len(set(TALLY.skipped_in))
    if answers or skipped_tests:
        counts = [f"{skipped_tests} tests"] if skipped_tests else []
        if answers:
            counts.append(
                f"the spec check of {answers} answers in {in_tests} tests (which still "
                "validated them with tests/reference/ and the SDK's models)"
            )
        return f"skipped for {published_absent_reason()}: {', and '.join(counts)}"
    if TALLY.run:
        return (
            f"{TALLY.run} answers also validated against the published spec in {SHARED_SPEC_LABEL}"
        )
    return ""


# --- drift: our schema against the spec's ----------------------------------------------

_COMPARED = (
    "type",
    "enum",
    "const",
    "required",
    "additionalProperties",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "maxProperties",
    "$ref",
)


@dataclasses.dataclass(frozen=True)
class Difference:
    """One fact on which our schema and the spec's disagree (``None``: absent there)."""

    node: str  # a JSON pointer into the schema, "" for its root
    keyword: str
    ours: Any
    published: Any

    def __str__(self) -> str:
        return f"{self.node or '/'} {self.keyword}: ours {self.ours!r}, spec {self.published!r}"


def schema_differences(ours: dict[str, Any], published: dict[str, Any]) -> list[Difference]:
    """Where ``ours`` departs from ``published`` in a fact that decides validity.

    Compared: property names, and at every node ``type``, ``enum``, ``const``,
    ``required``, bounds, ``additionalProperties``, the target name of a ``$ref`` and the
    branches of ``anyOf``/``oneOf``/``allOf``. OpenAPI 3.0's ``nullable`` in the spec
    counts as a union with ``null``. Annotations (descriptions, formats, ``x-*``,
    ``discriminator``) are ignored.
    """
    mine, theirs = _facts(ours), _facts(published)
    return [
        Difference(node, keyword, mine.get((node, keyword)), theirs.get((node, keyword)))
        for node, keyword in sorted(mine.keys() | theirs.keys())
        if mine.get((node, keyword)) != theirs.get((node, keyword))
    ]


def marked_nodes(schema: dict[str, Any]) -> set[str]:
    """The nodes of our schema whose ``$comment`` declares a deliberate difference."""
    return {
        node
        for node, sub in _nodes(schema)
        if str(sub.get("$comment", "")).startswith(DIFFERS_MARKER)
    }


def _facts(schema: dict[str, Any]) -> dict[tuple[str, str], Any]:
    facts: dict[tuple[str, str], Any] = {}
    for node, sub in _nodes(schema):
        for keyword in _COMPARED:
            if keyword not in sub:
                continue
            value = sub[keyword]
            if keyword == "type":
                value = sorted([value] if isinstance(value, str) else value)
            elif keyword in ("enum", "required"):
                value = sorted(value, key=json.dumps)
            elif keyword == "$ref":
                value = value.rsplit("/", 1)[-1]
            elif keyword == "additionalProperties" and isinstance(value, dict):
                continue  # a schema: its own node
            facts[node, keyword] = value
        if "properties" in sub:
            facts[node, "properties"] = sorted(sub["properties"])
        for keyword in ("anyOf", "oneOf", "allOf"):
            if keyword in sub:
                facts[node, keyword] = len(sub[keyword])
    return facts


def _nodes(schema: dict[str, Any], node: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema with its JSON pointer, OpenAPI ``nullable`` rewritten as 2020-12."""
    schema = _from_openapi(schema)
    yield node, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{node}/properties/{name}")
    for keyword in ("items", "additionalProperties", "propertyNames"):
        if isinstance(schema.get(keyword), dict):
            yield from _nodes(schema[keyword], f"{node}/{keyword}")
    for keyword in ("anyOf", "oneOf", "allOf"):
        for index, sub in enumerate(schema.get(keyword, [])):
            yield from _nodes(sub, f"{node}/{keyword}/{index}")
