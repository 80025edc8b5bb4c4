"""``/openapi.json`` documents the body of every fine-tuning, admin and health answer (issue 12);
the fine-tuning models carry every field of the official openai client's types, and the bodies
built from them are what the gateway always sent (the client's fields ragtune does not fill are
absent, not null)."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint
from pydantic import BaseModel

from ragtune.trainer.v1 import trainer_pb2 as tpb
from ragtune_gateway.services import fine_tuning as ft
from tests.fixtures.openapi import gateway_openapi, operations, resolve

PREFIXES = ("/v1/fine_tuning/", "/v1/admin/", "/healthz", "/readyz")


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return gateway_openapi(tmp_path_factory.mktemp("state"))


def _json_body(spec: dict[str, Any], path: str, status: str = "200") -> dict[str, Any]:
    return resolve(spec, spec["paths"][path]["get"]["responses"][status]["content"]["application/json"]["schema"])


def test_every_fine_tuning_admin_and_health_answer_has_a_documented_body(spec: dict[str, Any]) -> None:
    found = operations(spec, PREFIXES)
    assert len(found) >= 7 + 5 + 2  # fine-tuning 7 routes, admin 5, health 2
    for path, method, operation in found:
        schema = resolve(spec, operation["responses"]["200"]["content"]["application/json"]["schema"])
        assert schema.get("properties"), f"{method.upper()} {path} documents no response body"


def test_the_events_route_documents_its_stream_too(spec: dict[str, Any]) -> None:
    path = "/v1/fine_tuning/jobs/{job_id}/events"
    assert "text/event-stream" in spec["paths"][path]["get"]["responses"]["200"]["content"]
    event = resolve(spec, _json_body(spec, path)["properties"]["data"]["items"])
    assert set(event["required"]) >= {"id", "created_at", "level", "message"}


def test_readyz_documents_its_503(spec: dict[str, Any]) -> None:
    assert _json_body(spec, "/readyz", "503")["properties"]["checks"]


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
    schema = _json_body(spec, path)
    if "data" in schema["properties"]:  # a list page: its items
        schema = resolve(spec, schema["properties"]["data"]["items"])
    missing = set(sdk_type.model_fields) - set(schema["properties"])
    assert not missing, missing
    required = {name for name, field in sdk_type.model_fields.items() if field.is_required()} - {"object"}
    assert required <= set(schema.get("required", [])), required - set(schema.get("required", []))


def test_bodies_are_sent_as_before() -> None:
    """Only what the gateway always sent: no null ``dpo``/``reinforcement`` in the method, no
    unmeasured checkpoint metrics; ints stay ints (the learning-rate multiplier, the step)."""
    job = tpb.Job(id="ftjob-abc", tenant="t", status=tpb.JOB_STATUS_SUCCEEDED, training_file="file-1")
    job.hyperparameters.learning_rate_multiplier.number = 10
    job.hyperparameters.n_epochs.number = 3
    body = ft.job_object(job).model_dump(mode="json")
    assert body["method"] == {"type": "supervised", "supervised": {"hyperparameters": body["hyperparameters"]}}
    assert body["hyperparameters"] == {"batch_size": "auto", "learning_rate_multiplier": 10, "n_epochs": 3}
    checkpoint = tpb.Checkpoint(step=6)
    checkpoint.created_at.seconds = 5
    sent = ft.checkpoint_object(job, checkpoint).model_dump(mode="json")
    assert sent["metrics"] == {"step": 6} and sent["id"] == "ftckpt-abc-6"
    event = tpb.JobEvent(job_id="ftjob-abc", seq=4, message="hello")
    assert ft.event_object(event).model_dump(mode="json") == {
        "id": "ftevent-abc-4",
        "object": "fine_tuning.job.event",
        "created_at": 0,
        "level": "info",
        "type": "message",
        "message": "hello",
        "data": {},
    }
