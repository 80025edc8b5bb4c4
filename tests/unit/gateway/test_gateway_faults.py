"""The gateway's answers to faults that are not the client's: gRPC's own message-size refusal is
413 (the request is too big), not 429 back-pressure; UNAVAILABLE is 503 with Retry-After; a
cleanup that fails after an error never replaces that error; field names in 400s never echo the
bad characters."""

from __future__ import annotations

import grpc
import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from ragtune_gateway.downstream.errors import to_api_error
from ragtune_gateway.errors import ApiError, _validation_error, best_effort
from ragtune_gateway.schemas.common import check_json
from ragtune_gateway.schemas.fine_tuning import CreateJob
from ragtune_gateway.schemas.vector_stores import CreateStore


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    "details",
    [
        "Sent message larger than max (70000000 vs. 67108864)",  # the gateway's own channel refused to send it
        "Received message larger than max (70000000 vs. 67108864)",  # the service refused to read it
        "grpc: received message larger than max (70000000 vs. 4194304)",
    ],
)
def test_message_size_refusal_is_413_not_429(details: str) -> None:
    error = to_api_error(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, details), "retriever")
    assert error.status == 413 and error.code == "request_too_large" and error.type == "invalid_request_error"
    assert "67108864" not in error.message
    busy = to_api_error(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many requests in flight"), "generator")
    assert busy.status == 429  # real back-pressure stays 429


def test_unavailable_is_503_with_retry_after() -> None:
    error = to_api_error(rpc_error(grpc.StatusCode.UNAVAILABLE, "connection refused"), "trainer")
    assert error.status == 503 and error.response().headers["retry-after"].isdigit()


def test_a_failing_cleanup_never_hides_the_original_error() -> None:
    original = ApiError(400, "the real problem", param="file_ids[0]")

    def failing_cleanup() -> None:
        raise ConnectionError("the cleanup failed too")

    with pytest.raises(ApiError) as raised:
        try:
            raise original
        except ApiError:
            with best_effort("delete what was half made"):
                failing_cleanup()
            raise
    assert raised.value is original


def test_bad_keys_are_named_by_their_object_never_echoed() -> None:
    with pytest.raises(ValidationError) as bad:
        CreateStore.model_validate({"metadata": {"k\x00": "v"}})
    error = _validation_error(RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in bad.value.errors()]))
    assert error.status == 400 and error.param == "metadata" and "\x00" not in error.message


def test_union_errors_say_what_is_wrong_with_the_value() -> None:
    with pytest.raises(ValidationError) as bad:
        CreateJob.model_validate({"training_file": "f", "hyperparameters": {"n_epochs": 0}})
    error = _validation_error(RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in bad.value.errors()]))
    assert error.param == "hyperparameters.n_epochs" and "greater than or equal to 1" in error.message


def test_json_values_are_walked_without_recursion() -> None:
    deep: list[object] = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    with pytest.raises(ValueError, match="deeper than"):
        check_json({"a": deep})
    with pytest.raises(ValueError, match="outside"):
        check_json({"a": [1, 2, 2**60]})
    assert check_json({"a": [1, 2.5, "x", None, True, {"b": []}]}) == {"a": [1, 2.5, "x", None, True, {"b": []}]}
