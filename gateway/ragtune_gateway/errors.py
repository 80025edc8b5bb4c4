"""Every error a client sees, in the OpenAI shape ``{"error": {"message", "type", "param", "code"}}``.

One table maps gRPC status codes to HTTP; downstream ``field: message`` details become ``param``.
Faults that are not the client's and pass: a downstream service or PostgreSQL unavailable -> 503
with ``Retry-After``; a message over gRPC's size limit -> 413 (it is the request that is too big,
not back-pressure). A client that goes away mid-request -> 499. Anything unexpected is logged with
its traceback and answered 500 with only the request id.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import grpc
import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ragtune_common.logging import request_id_var

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
_HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
RETRY_AFTER_S = 5  # what a 503 asks the client to wait: a restarted service or database is back by then
# gRPC's own refusal of an oversized message (either side's max_*_message_length), not back-pressure
_MESSAGE_TOO_LARGE = re.compile(r"message larger than max|larger than max \(|message too large", re.I)
# pydantic's tags for the branch of a union that failed ("str", "list[TextPart]", "function-after[...]")
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|constrained-\w+)$|[\[(]")
# The `field: message` prefix the services put on a detail (ragtune_common.errors.RagtuneError.describe).
_FIELD_DETAIL = re.compile(r"^(?P<field>[A-Za-z_$][\w.$\[\]-]*): (?P<message>.+)$", re.S)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type_ or _HTTP_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers() or None)


def not_found(what: str, ident: str, param: str | None = None) -> ApiError:
    """The one answer for a missing object and for another tenant's: the two are indistinguishable."""
    return ApiError(404, f"No {what} found with id '{ident}'.", param=param, code="not_found")


def database_unavailable() -> ApiError:
    """PostgreSQL cannot be reached (down, restarting, pool exhausted): retryable, never a 500."""
    return ApiError(
        503, "The database is unavailable; retry later.", code="database_unavailable", retry_after_s=RETRY_AFTER_S
    )


def client_disconnected() -> ApiError:
    """The client went away before its request was read whole (an aborted upload)."""
    return ApiError(499, "The client closed the request before it was complete.", code="client_closed_request")


@contextmanager
def best_effort(action: str) -> Iterator[None]:
    """For cleanup after a failure: a cleanup that fails too is logged, and the original error
    (the one being handled) is what propagates, never the cleanup's."""
    try:
        yield
    except Exception:
        log.exception("cleanup failed: %s", action)


def from_rpc_error(
    exc: grpc.aio.AioRpcError,
    service: str,
    *,
    params: Mapping[str, str] | None = None,
    missing: ApiError | None = None,
) -> ApiError:
    """The client-facing error for a failed downstream call. ``params`` renames downstream field
    prefixes to request parameters; ``missing`` replaces NOT_FOUND (so it names the object as the
    client knows it and reads the same for a missing object and another tenant's)."""
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
    details = exc.details() or code_name
    param: str | None = None
    match = _FIELD_DETAIL.match(details)
    if match:
        param, details = match.group("field"), match.group("message")
        for prefix, renamed in (params or {}).items():
            if param == prefix or param.startswith((prefix + ".", prefix + "[")):
                param = renamed + param[len(prefix) :]
                break
    return ApiError(status, details, param=param, code=code_name, type_=type_)


@contextmanager
def rpc_errors(
    service: str, *, params: Mapping[str, str] | None = None, missing: ApiError | None = None
) -> Iterator[None]:
    """Turn a failed gRPC call inside the block into the client-facing :class:`ApiError`."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc, service, params=params, missing=missing) from None


def _param(loc: tuple[Any, ...]) -> str | None:
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)  # where, then what
    parts = [p for p in parts if isinstance(p, int) or not _UNION_TAG.search(str(p))]
    text = ""
    for part in parts:
        if isinstance(part, str) and not part.isprintable():
            break  # a key that is itself the fault (a NUL in it): the param is its object, never echoed
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def _is_type_mismatch(error_type: str) -> bool:
    return error_type.endswith("_type") or error_type in ("literal_error", "union_tag_invalid", "is_instance_of")


def _validation_error(exc: RequestValidationError) -> ApiError:
    errors = exc.errors()
    if not errors:
        return ApiError(400, "Invalid request.")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return ApiError(
            400, f"The body is not valid JSON: {first.get('ctx', {}).get('error', 'parse error')}.", code="invalid_json"
        )
    param = _param(tuple(first.get("loc", ())))
    # of a union's branches (same param), the one that says what is wrong with the value, not its type
    same = [e for e in errors if _param(tuple(e.get("loc", ()))) == param]
    first = next((e for e in same if not _is_type_mismatch(str(e.get("type", "")))), first)
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "missing":
        message = "Field required"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ApiError(400, f"{param}: {message}{more}" if param else message + more, param=param, code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _validation_error(exc).response()

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = "Unknown route." if exc.status_code == 404 else str(exc.detail)
        return ApiError(exc.status_code, message).response()

    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return database_unavailable().response()

    async def disconnected(request: Request, exc: Exception) -> JSONResponse:
        return client_disconnected().response()  # nobody reads it; the status is for logs and metrics

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        message = f"Internal error (request id {request_id_var.get()})."
        return ApiError(500, message, code="internal_error").response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(psycopg.OperationalError, database_down)  # includes the pool's PoolTimeout
    app.add_exception_handler(ClientDisconnect, disconnected)
    app.add_exception_handler(Exception, unexpected)
