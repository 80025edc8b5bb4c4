"""What every typed client shares: the request id carried as metadata, one deadline per kind of
call, and errors mapped to :class:`~ragtune_gateway.errors.ApiError` (:mod:`.errors`), for unary
calls and for streams alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

import grpc

from ragtune_common.interceptors import REQUEST_ID_HEADER
from ragtune_common.logging import request_id_var
from ragtune_gateway.downstream.errors import Fields, mapped, to_api_error
from ragtune_gateway.errors import ApiError

Reply = TypeVar("Reply")
Event = TypeVar("Event")


def request_metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying the current request id downstream."""
    return ((REQUEST_ID_HEADER, request_id_var.get()),)


class ServiceClient:
    """Base of the typed clients: ``service`` names the service in errors."""

    service = "service"

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    async def _unary(
        self,
        method: Callable[..., Awaitable[Reply]],
        request: Any,
        *,
        timeout_s: float | None = None,
        fields: Fields | None = None,
        missing: ApiError | None = None,
    ) -> Reply:
        with mapped(self.service, fields=fields, missing=missing):
            return await method(request, timeout=timeout_s or self.timeout_s, metadata=request_metadata())


class EventStream(Generic[Event]):
    """A server stream whose failures surface as :class:`ApiError`: iterate it with ``async for``,
    and ``close()`` it (or leave the ``async with``) to cancel the call.

    ``call`` is anything with ``__aiter__`` and ``cancel()`` (a grpc.aio stream call, or the
    generator's replica-spilling stream)."""

    def __init__(
        self, call: Any, service: str, *, fields: Fields | None = None, missing: ApiError | None = None
    ) -> None:
        self._call = call
        self._events: AsyncIterator[Event] = call.__aiter__()
        self._service = service
        self._fields = fields
        self._missing = missing

    def __aiter__(self) -> EventStream[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._events.__anext__()
        except grpc.aio.AioRpcError as exc:
            raise to_api_error(exc, self._service, fields=self._fields, missing=self._missing) from None

    async def next_within(self, timeout_s: float | None) -> Event | None:
        """The next event, or None when the stream ended or stayed quiet for ``timeout_s``."""
        with contextlib.suppress(StopAsyncIteration, TimeoutError):
            return await asyncio.wait_for(self.__anext__(), timeout_s)
        return None

    def close(self) -> None:
        self._call.cancel()

    async def __aenter__(self) -> EventStream[Event]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
