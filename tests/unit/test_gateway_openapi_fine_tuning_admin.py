"""``/openapi.json`` documents the body of every fine-tuning, admin and health answer (issue 12),
and the fine-tuning models carry every field of the official openai client's types."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint
from pydantic import BaseModel

from ragtune_gateway.app import create_app
from ragtune_gateway.settings import GatewaySettings

PREFIXES = ("/v1/fine_tuning/", "/v1/admin/", "/healthz", "/readyz")


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = GatewaySettings(state_dir=tmp_path_factory.mktemp("state"))
    reply = TestClient(create_app(settings)).get("/openapi.json")  # no lifespan: no database needed
    assert reply.status_code == 200
    return reply.json()  # type: ignore[no-any-return]


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        if path.startswith(PREFIXES)
        for method, operation in item.items()
    ]


def test_every_fine_tuning_admin_and_health_answer_has_a_documented_body(spec: dict[str, Any]) -> None:
    operations = _operations(spec)
    assert len(operations) >= 7 + 5 + 2  # fine-tuning 7 routes, admin 5, health 2
    for path, method, operation in operations:
        content = operation["responses"]["200"]["content"]
        schema = _resolve(spec, content["application/json"]["schema"])
        assert schema.get("properties"), f"{method.upper()} {path} documents no response body"


def test_the_events_route_documents_its_stream_too(spec: dict[str, Any]) -> None:
    content = spec["paths"]["/v1/fine_tuning/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in content
    page = _resolve(spec, content["application/json"]["schema"])
    event = _resolve(spec, page["properties"]["data"]["items"])
    assert set(event["required"]) >= {"id", "created_at", "level", "message"}


def test_readyz_documents_its_503(spec: dict[str, Any]) -> None:
    responses = spec["paths"]["/readyz"]["get"]["responses"]
    assert _resolve(spec, responses["503"]["content"]["application/json"]["schema"])["properties"]["checks"]


@pytest.mark.parametrize(
    ("path", "sdk_type"),
    [
        ("/v1/fine_tuning/jobs/{job_id}", FineTuningJob),
        ("/v1/fine_tuning/jobs/{job_id}/events", FineTuningJobEvent),
        ("/v1/fine_tuning/jobs/{job_id}/checkpoints", FineTuningJobCheckpoint),
    ],
)
def test_fine_tuning_models_have_every_field_of_the_sdk_types(
    spec: dict[str, Any], path: str, sdk_type: type[BaseModel]
) -> None:
    schema = _resolve(spec, spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"])
    if "data" in schema["properties"]:  # a list page: its items
        schema = _resolve(spec, schema["properties"]["data"]["items"])
    assert set(sdk_type.model_fields) <= set(schema["properties"]), set(sdk_type.model_fields) - set(
        schema["properties"]
    )
    required = {name for name, field in sdk_type.model_fields.items() if field.is_required()}
    assert required - {"object"} <= set(schema.get("required", [])), required - set(schema.get("required", []))
