"""Validate payloads against the published JSON Schemas in docs/schemas."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


@lru_cache(maxsize=None)
def _registry() -> tuple[Registry, dict[str, dict]]:
    docs = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")}
    registry = Registry().with_resources(
        [(doc["$id"], Resource.from_contents(doc)) for doc in docs.values()])
    return registry, docs


def validate(kind: str, payload: dict) -> None:
    """Raise jsonschema.ValidationError unless `payload` fits docs/schemas/{kind}.schema.json."""
    registry, docs = _registry()
    schema = docs[f"{kind}.schema.json"]
    Draft202012Validator.check_schema(schema)
    Draft202012Validator(schema, registry=registry).validate(payload)


def kind_of(topic: str) -> str | None:
    """Which schema a topic's payload follows."""
    last = topic.split("/")
    if topic.startswith("homeassistant/") and last[-1] == "config":
        return "ha-discovery"
    if len(last) >= 2 and last[-2] == "cmd":
        return None  # requests are what the test itself sent
    if last[-1] in ("result", "state", "status", "capture"):
        return last[-1]
    if len(last) >= 2 and last[-2] == "reply":
        return "command-reply"
    return None
