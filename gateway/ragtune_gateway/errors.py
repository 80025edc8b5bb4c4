"""Every error a client sees, in the OpenAI shape ``{"error": {"message", "type", "param", "code"}}``.

Request validation errors name the field as ``param``; PostgreSQL unavailable -> 503 with
``Retry-After``; a client that goes away mid-request -> 499. Anything unexpected is logged with its
traceback and answered 500 with only the request id. Failed downstream calls are mapped where they
are made, in :mod:`ragtune_gateway.downstream.errors`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ragtune_common.logging import request_id_var

log = logging.getLogger(__name__)

_HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
RETRY_AFTER_S = 5  # what a 503 asks the client to wait: a restarted service or database is back by then
# pydantic's tags for the branch of a union that failed ("str", "list[TextPart]", "function-after[...]")
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|constrained-\w+)$|[\[(]")


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
