"""The one server interceptor: request ids and the mapping of errors to status codes.

Domain errors (:mod:`ragtune_common.errors`) become their status with their message, and a
field error also carries a ``google.rpc.BadRequest`` field violation as a status detail; a lost
database becomes UNAVAILABLE; anything else is a bug: logged with its traceback, answered
INTERNAL with only the request id, so no traceback ever reaches a client. A request that cannot
be decoded (e.g. a google.protobuf.Struct nested past protobuf's 100-level limit, about 32 levels
of JSON) is INVALID_ARGUMENT, not grpc's UNKNOWN.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
from google.protobuf.message import DecodeError
from psycopg_pool import PoolTimeout

from ragtune_common.errors import InvalidArgument, RagtuneError, Unavailable, status_details
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
        await context.abort(error.code, error.describe(), trailing_metadata=status_details(error))


def _request_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and 0 < len(value) <= 64:
            return value
    return new_request_id()


def _passthrough(exc: BaseException) -> bool:
    # Aborts the servicer raised itself, and cancellation, go through untouched.
    return isinstance(exc, grpc.aio.AbortError | asyncio.CancelledError)


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request message that failed to parse, so the failure is answered here."""

    reason: str

    def error(self) -> InvalidArgument:
        return InvalidArgument(f"could not be decoded ({self.reason})", field="request")


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Undecodable(str(exc))

    return deserialize


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise request.error()
        yield request


def _checked(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise request.error()
    return _checked_stream(request) if hasattr(request, "__aiter__") else request


def _wrap_unary(method: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = request_id_var.set(_request_id(context))
        try:
            return await behavior(_checked(request), context)
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
            async for item in behavior(_checked(request), context):
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
        handler = handler._replace(request_deserializer=_tolerant(handler.request_deserializer))  # type: ignore[attr-defined]
        return wrap_behavior(handler, method, _wrap_unary, _wrap_stream)


def wrap_behavior(
    handler: grpc.RpcMethodHandler,
    method: str,
    wrap_unary: Callable[[str, Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]],
    wrap_stream: Callable[[str, Callable[..., AsyncIterator[Any]]], Callable[..., AsyncIterator[Any]]],
) -> grpc.RpcMethodHandler:
    """The handler with its one behaviour wrapped, for server interceptors: ``wrap_stream`` for
    server-streaming behaviours that are async generators, ``wrap_unary`` for those that return once
    (unary responses, and streaming handlers written as coroutines calling ``context.write()``)."""
    for kind in ("unary_unary", "stream_unary", "unary_stream", "stream_stream"):
        behavior = getattr(handler, kind)
        if behavior:
            streaming = kind in ("unary_stream", "stream_stream") and inspect.isasyncgenfunction(behavior)
            wrapped = wrap_stream(method, behavior) if streaming else wrap_unary(method, behavior)
            return handler._replace(**{kind: wrapped})  # type: ignore[attr-defined,no-any-return]
    return handler
