"""A mirror's vector store settings: parsed and checked here, used by ``syncd.sync.vectors``.

Keys of a ``[[mirror]]`` table (``config.example.toml`` documents each)::

    vector_store = "docs"             # a name: syncd creates the store once, records its id
    # vector_store_id = "vs_abc123"   # or an existing store (not both)
    attributes = { team = "docs" }    # static attributes of every attached file
    chunking = { max_tokens = 800, overlap = 400 }   # or "auto" (the default)
    indexing_deadline = 1800          # seconds a file may stay in_progress

and of a ``[[mirror.rules]]`` table: ``attributes`` (added to the mirror's; the rule's
win) and ``chunking`` (instead of the mirror's), for the files that rule decides the
purpose of. Files are attached when their purpose is one file search takes
(``assistants``, ``user_data``); a rule with another purpose may not set either key.

Checked at load, each error naming the table and key: at most 16 attributes per file
including syncd's own three (``path``, ``sha256``, ``syncd_owner``, which no table may
set), keys up to 64 characters, values strings up to 512 characters, booleans or
numbers; chunks of 100 to 4,096 tokens overlapping by at most half; a deadline of 1
second to 7 days.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from syncd.errors import ConfigError
from syncd.local.rules import PurposeRule, glob_matches
from syncd.vector_api import (
    ATTACHABLE_PURPOSES,
    MAX_ATTRIBUTES,
    RESERVED_ATTRIBUTES,
    AttributeValue,
    Chunking,
    attributes_problem,
    chunking_problem,
)

DEFAULT_INDEXING_DEADLINE = 1800.0  # 30 minutes
MAX_INDEXING_DEADLINE = 7 * 86400.0
MAX_USER_ATTRIBUTES = MAX_ATTRIBUTES - len(RESERVED_ATTRIBUTES)
MIRROR_VECTOR_KEYS = frozenset(
    {"vector_store", "vector_store_id", "attributes", "chunking", "indexing_deadline"}
)
RULE_VECTOR_KEYS = frozenset({"attributes", "chunking"})
AUTO = "auto"

AttributePairs = tuple[tuple[str, AttributeValue], ...]


@dataclass(frozen=True)
class VectorRule:
    """What one purpose rule adds for its files: attributes, and chunking
    (``None``: the mirror's; ``"auto"``: the server's default)."""

    glob: str
    purpose: str
    attributes: AttributePairs = ()
    chunking: Chunking | str | None = None


@dataclass(frozen=True)
class VectorConfig:
    """The vector store one mirror keeps exact (see the module docstring)."""

    name: str | None = None  # syncd creates (once) and owns a store of this name ...
    store_id: str | None = None  # ... or uses this existing store
    attributes: AttributePairs = ()
    chunking: Chunking | None = None  # None: the server's default (auto)
    indexing_deadline: float = DEFAULT_INDEXING_DEADLINE
    rules: tuple[VectorRule, ...] = ()  # one per purpose rule, in the same order

    @property
    def target(self) -> str:
        """How the store is named in messages: ``vs_abc123`` or ``'docs'``."""
        return self.store_id if self.store_id else repr(self.name)

    def for_path(self, path: str) -> tuple[dict[str, AttributeValue], Chunking | None]:
        """The static attributes and the chunking (None: auto) that ``path`` gets: the
        mirror's, with those of the first rule whose glob matches (the rule that decides
        the path's purpose)."""
        attributes = dict(self.attributes)
        for rule in self.rules:
            if glob_matches(rule.glob, path):
                attributes.update(rule.attributes)
                chunking = self.chunking if rule.chunking is None else rule.chunking
                return attributes, chunking if isinstance(chunking, Chunking) else None
        return attributes, self.chunking


def attaches(purpose: str | None) -> bool:
    """Whether files of ``purpose`` go into a vector store (file search takes them)."""
    return purpose in ATTACHABLE_PURPOSES


# -- checks of single values (each names the key) ---------------------------------------


def check_store_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected the store's name, a non-empty string")
    return value


def check_store_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("vs_") or not value[3:].isalnum():
        raise ConfigError(
            f"{where}: expected a vector store id like 'vs_abc123', not {value!r} (to have "
            'syncd create a store of that name, use vector_store = "NAME")'
        )
    return value


def check_attributes(value: Any, where: str) -> AttributePairs:
    problem = attributes_problem(value, reserved=RESERVED_ATTRIBUTES)
    if problem is None and len(value) > MAX_USER_ATTRIBUTES:
        problem = (
            f"at most {MAX_USER_ATTRIBUTES} attributes (a file holds {MAX_ATTRIBUTES}, and "
            f"syncd sets {len(RESERVED_ATTRIBUTES)} of them), not {len(value)}"
        )
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    return tuple(sorted(value.items()))


def check_chunking(value: Any, where: str) -> Chunking | str:
    """``{ max_tokens = N, overlap = M }`` or ``"auto"``."""
    if value == AUTO:
        return AUTO
    if not isinstance(value, dict) or set(value) != {"max_tokens", "overlap"}:
        raise ConfigError(
            f'{where}: expected "auto" or {{ max_tokens = N, overlap = M }}, not {value!r}'
        )
    problem = chunking_problem(value["max_tokens"], value["overlap"])
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    return Chunking(int(value["max_tokens"]), int(value["overlap"]))


def check_indexing_deadline(value: Any, where: str) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 1 <= value <= MAX_INDEXING_DEADLINE:
        raise ConfigError(
            f"{where}: indexing_deadline must be seconds from 1 to {MAX_INDEXING_DEADLINE:g} "
            f"(7 days), not {value!r}"
        )
    return float(value)


# -- the mirror's vector settings, from its table ---------------------------------------


def fold_vector_keys(
    values: dict[str, Any], rule_tables: Any, rules: tuple[PurposeRule, ...], where: str
) -> dict[str, Any]:
    """``values`` (the mirror's checked keys) with the vector keys folded into one
    ``vector`` field (a ``VectorConfig``, or None when the mirror names no store)."""
    found = {key: values.pop(key) for key in MIRROR_VECTOR_KEYS if key in values}
    vector_rules = _vector_rules(rule_tables, rules, where)
    if not found and not any(r.attributes or r.chunking for r in vector_rules):
        return values
    if "vector_store" in found and "vector_store_id" in found:
        raise ConfigError(f"{where}: give vector_store (a name) or vector_store_id, not both")
    if "vector_store" not in found and "vector_store_id" not in found:
        keys = ", ".join(sorted(set(found) | _rule_keys(vector_rules))) or "attributes"
        raise ConfigError(
            f'{where}: {keys} need a vector store: set vector_store = "NAME" or '
            'vector_store_id = "vs_..."'
        )
    chunking = found.get("chunking")
    config = VectorConfig(
        name=found.get("vector_store"),
        store_id=found.get("vector_store_id"),
        attributes=found.get("attributes", ()),
        chunking=chunking if isinstance(chunking, Chunking) else None,
        indexing_deadline=found.get("indexing_deadline", DEFAULT_INDEXING_DEADLINE),
        rules=vector_rules,
    )
    check_vector_config(config, values.get("purpose", "user_data"), where)
    values["vector"] = config
    return values


def _rule_keys(rules: tuple[VectorRule, ...]) -> set[str]:
    keys: set[str] = set()
    for rule in rules:
        keys |= {"attributes"} if rule.attributes else set()
        keys |= {"chunking"} if rule.chunking is not None else set()
    return {f"[[mirror.rules]] {k}" for k in keys}


def _vector_rules(
    tables: Any, rules: tuple[PurposeRule, ...], where: str
) -> tuple[VectorRule, ...]:
    """One ``VectorRule`` per purpose rule (the tables were checked by config._rule)."""
    found: list[VectorRule] = []
    for n, (table, rule) in enumerate(zip(tables or [], rules, strict=True), start=1):
        at = f"{where}: rules #{n}"
        attributes = (
            check_attributes(table["attributes"], f"{at}: attributes")
            if ("attributes" in table)
            else ()
        )
        chunking = (
            check_chunking(table["chunking"], f"{at}: chunking") if ("chunking" in table) else None
        )
        if (attributes or chunking is not None) and rule.purpose not in ATTACHABLE_PURPOSES:
            raise ConfigError(
                f"{at}: files of purpose {rule.purpose} are never attached to a vector store "
                f"(only {', '.join(ATTACHABLE_PURPOSES)}): attributes and chunking do not apply"
            )
        found.append(VectorRule(rule.glob, rule.purpose, attributes, chunking))
    return tuple(found)


def check_vector_config(config: VectorConfig, purpose: str, where: str) -> None:
    """Checks across keys: something can be attached (``purpose`` is the mirror's
    default); merged attributes stay in bounds."""
    purposes = {purpose, *(r.purpose for r in config.rules)}
    if not purposes & set(ATTACHABLE_PURPOSES):
        raise ConfigError(
            f"{where}: vector store {config.target}: no file would be attached (files are "
            f"attached when their purpose is {' or '.join(ATTACHABLE_PURPOSES)}; this mirror "
            f"uploads {', '.join(sorted(purposes))})"
        )
    for n, rule in enumerate(config.rules, start=1):
        merged = dict(config.attributes) | dict(rule.attributes)
        if len(merged) > MAX_USER_ATTRIBUTES:
            raise ConfigError(
                f"{where}: rules #{n}: with the mirror's attributes its files would have "
                f"{len(merged)} attributes of their own (at most {MAX_USER_ATTRIBUTES})"
            )


def with_store(
    vector: VectorConfig | None,
    purpose: str,
    rules: tuple[PurposeRule, ...],
    *,
    name: str | None,
    store_id: str | None,
) -> VectorConfig | None:
    """The mirror's vector settings with the store named on the command line
    (``--vector-store NAME`` / ``--vector-store-id ID``), checked like the keys."""
    if name is None and store_id is None:
        return vector
    if name is not None and store_id is not None:
        raise ConfigError("give --vector-store or --vector-store-id, not both")
    base = vector or VectorConfig(rules=tuple(VectorRule(r.glob, r.purpose) for r in rules))
    changed = dataclasses.replace(
        base,
        name=None if name is None else check_store_name(name, "--vector-store"),
        store_id=None if store_id is None else check_store_id(store_id, "--vector-store-id"),
    )
    check_vector_config(changed, purpose, "the command line")
    return changed
