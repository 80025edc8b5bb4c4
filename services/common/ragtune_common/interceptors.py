"""The one server interceptor: request ids and the mapping of errors to status codes.

Domain errors (:mod:`ragtune_common.errors`) become their status with their message; a lost
database becomes UNAVAILABLE; anything else is a bug: logged with its traceback, answered
INTERNAL with only the request id, so no traceback ever reaches a client.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import psycopg
from psycopg_pool import PoolTimeout

from ragtune_common.errors import RagtuneError, Unavailable
from ragtune_common.logging import new_request_id, request_id_var

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"


def to_domain_error(exc: BaseException) -> RagtuneError | None:
    """The domain error an exception stands for, or None for a bug."""
    if isinstance(exc, RagtuneError):
        return exc
    if isinstance(exc, psycopg.OperationalError | PoolTimeout):
        return Unavailable("database unavailable, retry later")
    return None


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: BaseException) -> None:
    error = to_domain_error(exc)
    if error is None:
        log.exception("unhandled error in %s", method, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {request_id_var.get()})")
    else:
        if error.code == grpc.StatusCode.UNAVAILABLE:
            log.warning("%s: %s (%s)", method, error.describe(), exc)
        await context.abort(error.code, error.describe())


def _request_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and 0 < len(value) <= 64:
            return value
    return new_request_id()


def _passthrough(exc: BaseException) -> bool:
    # Aborts the servicer raised itself, and cancellation, go through untouched.
    return isinstance(exc, grpc.aio.AbortError | asyncio.CancelledError)


def _wrap_unary(method: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = request_id_var.set(_request_id(context))
        try:
            return await behavior(request, context)
        except BaseException as exc:
            if _passthrough(exc) or not isinstance(exc, Exception):
                raise
            await _abort(context, method, exc)
        finally:
            request_id_var.reset(token)

    return wrapped


def _wrap_stream(method: str, behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        token = request_id_var.set(_request_id(context))
        try:
            async for item in behavior(request, context):
                yield item
        except BaseException as exc:
            if _passthrough(exc) or not isinstance(exc, Exception):
                raise
            await _abort(context, method, exc)
        finally:
            request_id_var.reset(token)

    return wrapped


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary:
            return handler._replace(unary_unary=_wrap_unary(method, handler.unary_unary))  # type: ignore[attr-defined]
        if handler.stream_unary:
            return handler._replace(stream_unary=_wrap_unary(method, handler.stream_unary))  # type: ignore[attr-defined]
        for kind in ("unary_stream", "stream_stream"):
            behavior = getattr(handler, kind)
            if behavior:
                # Streaming handlers are async generators, or coroutines that call context.write().
                wrap = _wrap_stream if inspect.isasyncgenfunction(behavior) else _wrap_unary
                return handler._replace(**{kind: wrap(method, behavior)})  # type: ignore[attr-defined]
        return handler
