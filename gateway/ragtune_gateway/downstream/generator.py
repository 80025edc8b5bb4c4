"""The generator replicas, as the gateway uses them.

:class:`GeneratorRouter` sends each request to a replica chosen with adapter affinity
(:mod:`ragtune_gateway.downstream.routing`), and passes it to the next replica in that order when
one refuses before answering (RESOURCE_EXHAUSTED, UNAVAILABLE); it keeps the stub's method names
and raw gRPC errors. :class:`GeneratorClient` is the typed face the services use: deadlines,
metadata and error mapping included.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from ragtune.generator.v1 import generator_pb2, generator_pb2_grpc
from ragtune_gateway.downstream.base import EventStream, request_metadata
from ragtune_gateway.downstream.channels import check_health
from ragtune_gateway.downstream.errors import Fields, mapped
from ragtune_gateway.downstream.routing import GeneratorReplicas, Replica

log = logging.getLogger(__name__)

SERVICE = generator_pb2.DESCRIPTOR.services_by_name["GeneratorService"].full_name
# A generator refusing before it answered: the request goes to the next replica in its order.
SPILL_CODES = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)

Reply = TypeVar("Reply")


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.001, deadline - time.monotonic())


def _adapter_key(request: generator_pb2.GenerateRequest) -> str | None:
    return f"{request.tenant}/{request.adapter}" if request.adapter else None


class SpillingStream:
    """A Generate call that tries the replicas in order until one answers: a refusal before the
    first event (RESOURCE_EXHAUSTED, UNAVAILABLE) moves on; once an event arrived it is that
    replica's stream. Iterate it and ``cancel()`` it like a grpc.aio stream call."""

    def __init__(
        self,
        replicas: Sequence[Replica],
        request: generator_pb2.GenerateRequest,
        timeout: float | None,
        metadata: Any,
    ) -> None:
        self._replicas = replicas
        self._request = request
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._metadata = metadata
        self._call: Any = None
        self._events: AsyncIterator[generator_pb2.GenerateResponse] | None = None
        self._cancelled = False

    def __aiter__(self) -> SpillingStream:
        return self

    async def __anext__(self) -> generator_pb2.GenerateResponse:
        if self._events is None:
            return await self._first()
        return await self._events.__anext__()

    async def _first(self) -> generator_pb2.GenerateResponse:
        if not self._replicas:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "no generator replicas"
            )
        for index, replica in enumerate(self._replicas):
            self._call = replica.stub.Generate(
                self._request, timeout=_remaining(self._deadline), metadata=self._metadata
            )
            events = self._call.__aiter__()
            try:
                first: generator_pb2.GenerateResponse = await events.__anext__()
            except grpc.aio.AioRpcError as exc:
                if exc.code() in SPILL_CODES and index + 1 < len(self._replicas) and not self._cancelled:
                    log.info("generator %s refused (%s): trying the next replica", replica.address, exc.code().name)
                    continue
                raise
            except StopAsyncIteration:
                self._events = events
                raise
            self._events = events
            return first
        raise AssertionError("unreachable")  # pragma: no cover

    def cancel(self) -> bool:
        self._cancelled = True
        return bool(self._call.cancel()) if self._call is not None else False


class GeneratorRouter:
    """The generator replicas behind one object with the stub's method names (raw gRPC errors)."""

    def __init__(self, replicas: GeneratorReplicas) -> None:
        self.replicas = replicas

    async def _spill(
        self,
        order: Sequence[Replica],
        call: Callable[[generator_pb2_grpc.GeneratorServiceStub, float | None], Awaitable[Reply]],
        timeout_s: float | None,
    ) -> Reply:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if not order:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "no generator replicas"
            )
        for index, replica in enumerate(order):
            try:
                return await call(replica.stub, _remaining(deadline))
            except grpc.aio.AioRpcError as exc:
                if exc.code() in SPILL_CODES and index + 1 < len(order):
                    log.info("generator %s refused (%s): trying the next replica", replica.address, exc.code().name)
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def GenerateUnary(
        self,
        request: generator_pb2.GenerateRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (the stub's signature)
        metadata: Any = None,
    ) -> generator_pb2.Completion:
        order = self.replicas.order(_adapter_key(request))
        return await self._spill(
            order, lambda stub, t: stub.GenerateUnary(request, timeout=t, metadata=metadata), timeout
        )

    def Generate(
        self, request: generator_pb2.GenerateRequest, *, timeout: float | None = None, metadata: Any = None
    ) -> SpillingStream:
        return SpillingStream(self.replicas.order(_adapter_key(request)), request, timeout, metadata)

    async def ListModels(
        self,
        request: generator_pb2.ListModelsRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (the stub's signature)
        metadata: Any = None,
    ) -> generator_pb2.ListModelsResponse:
        order = self.replicas.order(None)
        return await self._spill(order, lambda stub, t: stub.ListModels(request, timeout=t, metadata=metadata), timeout)

    async def health(self, timeout_s: float) -> str:
        """SERVING when any replica is, else NOT_SERVING when any answers, else UNREACHABLE."""
        statuses = await asyncio.gather(*(check_health(r.channel, SERVICE, timeout_s) for r in self.replicas.replicas))
        for status in ("SERVING", "NOT_SERVING"):
            if status in statuses:
                return status
        return "UNREACHABLE"


class GeneratorClient:
    """Completions whole or streamed, and the models the generators serve."""

    service = "generator"

    def __init__(self, router: GeneratorRouter, timeout_s: float, generate_timeout_s: float) -> None:
        self.router = router
        self.timeout_s = timeout_s
        self.generate_timeout_s = generate_timeout_s

    async def complete(
        self, request: generator_pb2.GenerateRequest, *, fields: Fields | None = None
    ) -> generator_pb2.Completion:
        with mapped(self.service, fields=fields):
            return await self.router.GenerateUnary(
                request, timeout=self.generate_timeout_s, metadata=request_metadata()
            )

    async def stream(
        self, request: generator_pb2.GenerateRequest, *, fields: Fields | None = None
    ) -> tuple[generator_pb2.GenerateResponse | None, EventStream[generator_pb2.GenerateResponse]]:
        """The first event (None when the stream ended without one) and the stream of the rest. The
        first is awaited here, so that a refused request (bad sampling, unknown adapter, overload)
        fails before anything was sent to the client."""
        call = self.router.Generate(request, timeout=self.generate_timeout_s, metadata=request_metadata())
        events: EventStream[generator_pb2.GenerateResponse] = EventStream(call, self.service, fields=fields)
        try:
            first = await events.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException:
            events.close()
            raise
        return first, events

    async def list_models(self, tenant: str) -> list[generator_pb2.Model]:
        """The base model and ``tenant``'s adapters (another tenant's are not listed)."""
        with mapped(self.service):
            reply = await self.router.ListModels(
                generator_pb2.ListModelsRequest(tenant=tenant), timeout=self.timeout_s, metadata=request_metadata()
            )
        return [m for m in reply.models if not m.is_adapter or m.tenant == tenant]

    async def health(self, timeout_s: float) -> str:
        return await self.router.health(timeout_s)
