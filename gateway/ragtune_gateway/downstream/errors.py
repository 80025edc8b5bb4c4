"""A failed downstream call as the client-facing :class:`~ragtune_gateway.errors.ApiError`.

One table maps gRPC status codes to HTTP. A field error names its field in a ``google.rpc.BadRequest``
status detail (sent by every ragtune service, :func:`ragtune_common.errors.status_details`): it
becomes ``param``, renamed from the downstream field path to the request's own through the
caller's ``fields`` table; the message is never parsed. Faults that are not the client's and
pass: a service unavailable -> 503 with ``Retry-After``; a message over gRPC's size limit -> 413
(it is the request that is too big, not back-pressure). Internal details and addresses never
reach the client.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import grpc

from ragtune_common.errors import field_violations
from ragtune_common.logging import request_id_var
from ragtune_gateway.errors import RETRY_AFTER_S, ApiError

log = logging.getLogger(__name__)

# gRPC code -> (HTTP status, OpenAI error type)
GRPC_TO_HTTP: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "invalid_request_error"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "invalid_request_error"),
    grpc.StatusCode.ABORTED: (409, "invalid_request_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.CANCELLED: (499, "api_error"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "api_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "api_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "api_error"),
    grpc.StatusCode.INTERNAL: (500, "api_error"),
    grpc.StatusCode.UNKNOWN: (500, "api_error"),
    grpc.StatusCode.DATA_LOSS: (500, "api_error"),
}
# gRPC's own refusal of an oversized message (either side's max_*_message_length), not back-pressure
_MESSAGE_TOO_LARGE = re.compile(r"message larger than max|larger than max \(|message too large", re.I)

Fields = Mapping[str, str]  # downstream field path prefix -> the request's parameter


def rename_field(field: str, fields: Fields | None) -> str:
    """``field`` with its longest matching downstream prefix replaced by the request's name."""
    for prefix in sorted(fields or {}, key=len, reverse=True):
        if field == prefix or field.startswith((prefix + ".", prefix + "[")):
            return (fields or {})[prefix] + field[len(prefix) :]
    return field


def to_api_error(
    exc: grpc.aio.AioRpcError, service: str, *, fields: Fields | None = None, missing: ApiError | None = None
) -> ApiError:
    """The client-facing error for a failed call to ``service``. ``missing`` replaces NOT_FOUND (so it
    names the object as the client knows it, and reads the same for a missing object and another
    tenant's)."""
    code = exc.code()
    status, type_ = GRPC_TO_HTTP.get(code, (500, "api_error"))
    code_name = code.name.lower() if code is not None else "unknown"
    if code == grpc.StatusCode.NOT_FOUND and missing is not None:
        return missing
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and _MESSAGE_TOO_LARGE.search(exc.details() or ""):
        message = f"The request is too large for the {service} service; send less at once."
        return ApiError(413, message, code="request_too_large", type_="invalid_request_error")
    if status >= 500 and code not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED):
        if status == 503:
            message = f"The {service} service is unavailable; retry later."
            return ApiError(status, message, code=code_name, type_=type_, retry_after_s=RETRY_AFTER_S)
        log.error("%s answered %s: %s", service, code_name, exc.details())
        message = f"Internal error in the {service} service (request id {request_id_var.get()})."
        return ApiError(status, message, code=code_name, type_=type_)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ApiError(status, f"The {service} service did not answer in time.", code=code_name, type_=type_)
    violations = field_violations(exc.trailing_metadata())
    if violations:
        field, description = violations[0]
        return ApiError(status, description, param=rename_field(field, fields), code=code_name, type_=type_)
    return ApiError(status, exc.details() or code_name, code=code_name, type_=type_)


@contextmanager
def mapped(service: str, *, fields: Fields | None = None, missing: ApiError | None = None) -> Iterator[None]:
    """Turn a failed gRPC call inside the block into the client-facing :class:`ApiError`."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise to_api_error(exc, service, fields=fields, missing=missing) from None
