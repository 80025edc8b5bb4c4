"""The gateway's translation tables: gRPC errors to OpenAI error bodies, filters, jobs and events."""

from __future__ import annotations

import json

import grpc
import pytest

from ragtune.trainer.v1 import trainer_pb2 as tpb
from ragtune_common.channels import service_config
from ragtune_common.errors import InvalidArgument, status_details
from ragtune_gateway.downstream.errors import to_api_error
from ragtune_gateway.downstream.retriever import IDEMPOTENT as RETRIEVER_IDEMPOTENT
from ragtune_gateway.downstream.retriever import SERVICE as RETRIEVER
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.services import fine_tuning as ft
from ragtune_gateway.services.vector_stores import search_filter


def rpc_error(code: grpc.StatusCode, details: str, trailing: grpc.aio.Metadata | None = None) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing or grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "status", "type_"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error"),
        (grpc.StatusCode.FAILED_PRECONDITION, 400, "invalid_request_error"),
        (grpc.StatusCode.NOT_FOUND, 404, "invalid_request_error"),
        (grpc.StatusCode.ALREADY_EXISTS, 409, "invalid_request_error"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limit_error"),
        (grpc.StatusCode.UNAVAILABLE, 503, "api_error"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504, "api_error"),
        (grpc.StatusCode.INTERNAL, 500, "api_error"),
    ],
)
def test_grpc_codes_map_to_http(code: grpc.StatusCode, status: int, type_: str) -> None:
    error = to_api_error(rpc_error(code, "field: went wrong"), "retriever")
    assert (error.status, error.type) == (status, type_)
    assert set(error.body()["error"]) == {"message", "type", "param", "code"}


def test_field_violation_becomes_the_renamed_param() -> None:
    """The field comes from the google.rpc.BadRequest detail, renamed by the longest prefix; the text
    of the message is never parsed for it."""
    violation = InvalidArgument("needs a number", field="filter.$or[1].year.$gt")
    exc = rpc_error(
        grpc.StatusCode.INVALID_ARGUMENT, violation.describe(), grpc.aio.Metadata(*status_details(violation))
    )
    error = to_api_error(exc, "retriever", fields={"filter": "rag.filter", "filter.$or": "never.this"})
    assert error.param == "never.this[1].year.$gt" and error.message == "needs a number"
    error = to_api_error(exc, "retriever", fields={"filter": "rag.filter"})
    assert error.param == "rag.filter.$or[1].year.$gt" and error.message == "needs a number"
    assert to_api_error(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "no field here"), "x").param is None
    # a message that merely looks like "field: message" names no field
    looks_like = to_api_error(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "query: too long"), "x")
    assert looks_like.param is None and looks_like.message == "query: too long"


def test_internal_details_and_addresses_never_reach_the_client() -> None:
    internal = to_api_error(rpc_error(grpc.StatusCode.INTERNAL, "Traceback (most recent call last): ..."), "trainer")
    assert "Traceback" not in internal.message and internal.status == 500
    down = to_api_error(rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to 10.0.0.3:50051"), "generator")
    assert "10.0.0.3" not in down.message and "generator" in down.message


def test_not_found_replaces_the_downstream_message() -> None:
    missing = not_found("vector store", "vs_1")
    error = to_api_error(rpc_error(grpc.StatusCode.NOT_FOUND, "collection 'vs_1' of tenant t"), "r", missing=missing)
    assert error is missing and error.body()["error"]["message"] == "No vector store found with id 'vs_1'."


def test_openai_filters_become_retriever_filters() -> None:
    assert search_filter({"type": "eq", "key": "lang", "value": "en"}) == {"lang": {"$eq": "en"}}
    nested = {
        "type": "and",
        "filters": [{"type": "gte", "key": "y", "value": 1}, {"type": "in", "key": "t", "value": [1]}],
    }
    assert search_filter(nested) == {"$and": [{"y": {"$gte": 1}}, {"t": {"$in": [1]}}]}
    assert search_filter({"lang": "en"}) == {"lang": "en"}  # native syntax passes through
    with pytest.raises(ApiError) as bad:
        search_filter({"type": "or", "filters": [{"type": "like", "key": "a", "value": 1}]})
    assert bad.value.param == "filters.filters[0].type"


def test_retry_policy_retries_unavailable_only_for_idempotent_methods() -> None:
    config = json.loads(service_config(RETRIEVER, RETRIEVER_IDEMPOTENT))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": RETRIEVER}
    (method_config,) = config["methodConfig"]
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    retried = {name["method"] for name in method_config["name"]}
    assert "Search" in retried and "CreateCollection" not in retried and "DeleteCollection" not in retried
    assert all(name["service"] == RETRIEVER for name in method_config["name"])
    assert "methodConfig" not in json.loads(service_config(RETRIEVER))


def test_a_finished_job_never_reads_running() -> None:
    job = tpb.Job(id="ftjob-abc", status=tpb.JOB_STATUS_SUCCEEDED, publish_state=tpb.PUBLISH_STATE_PENDING)
    job.hyperparameters.n_epochs.number = 3
    job.fine_tuned_model = "ft:base:abc"
    assert ft.job_object(job).model_dump()["status"] == "succeeded"  # a job an older trainer left unpublished
    job.publish_state = tpb.PUBLISH_STATE_PUBLISHED
    body = ft.job_object(job).model_dump()
    assert body["status"] == "succeeded" and body["fine_tuned_model"] == "ft:base:abc"
    assert body["hyperparameters"]["n_epochs"] == 3 and body["hyperparameters"]["batch_size"] == "auto"


def test_event_ids_carry_their_sequence() -> None:
    assert ft.event_seq(ft.event_id("ftjob-abc", 42)) == 42
    assert ft.event_seq("garbage") == 0
