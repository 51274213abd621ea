"""The published spec's schemas, for validating answers in tests.

The spec is read from ``shared/openai-files-api/openapi-files.yaml`` beside the clone
(never copied into the repo). ``validate("OpenAIFile", data)`` raises
``jsonschema.ValidationError`` if ``data`` does not match ``#/components/schemas/...``.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "openai-files-api"
    / "openapi-files.yaml"
)
SPEC_URI = "urn:openai-files-api"


@functools.cache
def spec() -> dict[str, Any]:
    if not SPEC_PATH.is_file():
        raise FileNotFoundError(
            f"the API spec is expected at {SPEC_PATH} (shared/ beside the clone)"
        )
    data: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return data


@functools.cache
def _registry() -> Registry:
    resource = Resource.from_contents(spec(), default_specification=DRAFT202012)
    registry: Registry = Registry().with_resource(SPEC_URI, resource)
    return registry


def validate(schema_name: str, instance: Any) -> None:
    """Validate ``instance`` against ``#/components/schemas/<schema_name>`` of the spec.

    The spec's ``OpenAIFile.purpose`` enum lacks ``evals`` although ``CreateFileRequest``
    accepts it; a file with purpose ``evals`` is validated with that one field
    checked separately.
    """
    instance = copy.deepcopy(instance)
    for file_obj in _files_in(schema_name, instance):
        if isinstance(file_obj, dict) and file_obj.get("purpose") == "evals":
            file_obj["purpose"] = "user_data"  # stands in for the enum gap only
    schema = {"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    validator.validate(instance)


def _files_in(schema_name: str, instance: Any) -> list[Any]:
    if not isinstance(instance, dict):
        return []
    if schema_name == "OpenAIFile":
        return [instance]
    if schema_name == "ListFilesResponse":
        return list(instance.get("data") or [])
    if schema_name == "Upload" and isinstance(instance.get("file"), dict):
        return [instance["file"]]
    return []
