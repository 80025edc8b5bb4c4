"""``/openapi.json`` documents what the model, alias and chat routes answer: every operation names
a JSON response schema (a pydantic model, not ``{}``), and the chat route also its SSE stream."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.openapi import gateway_openapi, resolve

PREFIXES = ("/v1/models", "/v1/aliases", "/v1/chat")


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return gateway_openapi(tmp_path_factory.mktemp("state"))


def _properties(spec: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The fields of a schema, or of every branch of a union (their intersection)."""
    schema = resolve(spec, schema)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return set.intersection(*(_properties(spec, b) for b in branches))
    return set(schema.get("properties", {}))


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        if path.startswith(PREFIXES)
        for method, operation in item.items()
    ]


def test_every_model_alias_and_chat_route_documents_its_response(spec: dict[str, Any]) -> None:
    operations = _operations(spec)
    assert len(operations) == 8, [(p, m) for p, m, _ in operations]
    for path, method, operation in operations:
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert _properties(spec, schema) >= {"object"}, f"{method.upper()} {path} documents no response body"


@pytest.mark.parametrize(
    ("path", "method", "fields"),
    [
        ("/v1/models", "get", {"object", "data", "has_more"}),
        ("/v1/models/{model}", "get", {"id", "object", "created", "owned_by", "parent"}),
        ("/v1/aliases", "get", {"object", "data"}),
        ("/v1/aliases/{alias}", "get", {"id", "object", "model", "metric", "score", "updated_at"}),
        ("/v1/aliases/{alias}", "delete", {"id", "object", "deleted"}),
        ("/v1/aliases/{alias}/promotions", "post", {"id", "candidate", "holder", "promoted", "reason"}),
        ("/v1/chat/completions", "post", {"id", "object", "created", "model", "choices", "usage", "citations"}),
    ],
)
def test_response_schemas_name_the_fields(spec: dict[str, Any], path: str, method: str, fields: set[str]) -> None:
    schema = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    assert _properties(spec, schema) >= fields


def test_chat_documents_its_event_stream(spec: dict[str, Any]) -> None:
    content = spec["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert "text/event-stream" in content and "application/json" in content
