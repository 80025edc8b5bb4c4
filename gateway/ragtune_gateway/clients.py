"""The gRPC clients, opened once at app start over :mod:`ragtune_common.channels` (service token,
optional TLS, deadlines per call).

- Retriever and trainer: one channel each, balanced per call (round_robin over healthy replicas)
  across an address list or a ``dns:///`` target; UNAVAILABLE is retried, on another replica, for
  the idempotent methods named here and for no other.
- Generator: a channel per replica and routing with adapter affinity (:mod:`ragtune_gateway.routing`);
  :class:`GeneratorClient` has the stub's method names, so call sites read the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ragtune.generator.v1 import generator_pb2, generator_pb2_grpc
from ragtune.retriever.v1 import retriever_pb2, retriever_pb2_grpc
from ragtune.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from ragtune_common.channels import ChannelSecurity, open_channel
from ragtune_gateway.routing import GeneratorReplicas, Replica
from ragtune_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

RETRIEVER = retriever_pb2.DESCRIPTOR.services_by_name["RetrieverService"].full_name
GENERATOR = generator_pb2.DESCRIPTOR.services_by_name["GeneratorService"].full_name
TRAINER = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name

# Methods whose repetition changes nothing: retried on UNAVAILABLE. Creates are not (a retry after a
# lost answer would report ALREADY_EXISTS, or make a second job), nor deletes (NOT_FOUND).
RETRIEVER_IDEMPOTENT = ("GetCollection", "ListCollections", "GetDocument", "ListDocuments", "Search", "UpsertDocuments")
TRAINER_IDEMPOTENT = ("GetDataset", "GetJob", "ListJobs", "WatchJob", "ListCheckpoints")
# A generator refusing before it answered: the request goes to the next replica in its order.
SPILL_CODES = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)

Reply = TypeVar("Reply")


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.001, deadline - time.monotonic())


def _adapter_key(request: generator_pb2.GenerateRequest) -> str | None:
    return f"{request.tenant}/{request.adapter}" if request.adapter else None


class GeneratorStream:
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

    def __aiter__(self) -> GeneratorStream:
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


class GeneratorClient:
    """The generator replicas behind one object with the stub's method names."""

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
    ) -> GeneratorStream:
        return GeneratorStream(self.replicas.order(_adapter_key(request)), request, timeout, metadata)

    async def ListModels(
        self,
        request: generator_pb2.ListModelsRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (the stub's signature)
        metadata: Any = None,
    ) -> generator_pb2.ListModelsResponse:
        order = self.replicas.order(None)
        return await self._spill(order, lambda stub, t: stub.ListModels(request, timeout=t, metadata=metadata), timeout)

    async def ListAdapters(
        self,
        request: generator_pb2.ListAdaptersRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (the stub's signature)
        metadata: Any = None,
    ) -> generator_pb2.ListAdaptersResponse:
        order = self.replicas.order(None)
        return await self._spill(
            order, lambda stub, t: stub.ListAdapters(request, timeout=t, metadata=metadata), timeout
        )

    async def health(self, timeout_s: float) -> str:
        """SERVING when any replica is, else NOT_SERVING when any answers, else UNREACHABLE."""
        statuses = await asyncio.gather(*(_check(r.channel, GENERATOR, timeout_s) for r in self.replicas.replicas))
        for status in ("SERVING", "NOT_SERVING"):
            if status in statuses:
                return status
        return "UNREACHABLE"


async def _check(channel: grpc.aio.Channel, service: str, timeout_s: float) -> str:
    try:
        request = health_pb2.HealthCheckRequest(service=service)
        reply = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout_s)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.aio.AioRpcError:
        return "UNREACHABLE"


@dataclass
class BalancedService:
    """One service behind a balanced channel, and a probe channel that also reaches replicas
    reporting NOT_SERVING (so /readyz can tell 'not ready' from 'not there')."""

    name: str
    channel: grpc.aio.Channel
    probe: grpc.aio.Channel

    @classmethod
    def open(cls, target: str, name: str, security: ChannelSecurity, idempotent: Sequence[str]) -> BalancedService:
        return cls(
            name,
            open_channel(target, name, security, idempotent=idempotent),
            open_channel(target, name, security, health_check=False),
        )

    async def health(self, timeout_s: float) -> str:
        status = await _check(self.channel, self.name, timeout_s)
        return status if status == "SERVING" else await _check(self.probe, self.name, timeout_s)

    async def close(self) -> None:
        await self.channel.close()
        await self.probe.close()


@dataclass
class Downstream:
    """The three services' clients: stubs over balanced channels, and the generator's router."""

    retriever: retriever_pb2_grpc.RetrieverServiceStub
    generator: GeneratorClient
    trainer: trainer_pb2_grpc.TrainerServiceStub
    balanced: dict[str, BalancedService]

    @classmethod
    def open(cls, settings: GatewaySettings) -> Downstream:
        """Opens the channels; the generator's health watches start with the running event loop."""
        security = ChannelSecurity.from_settings(settings)
        retriever = BalancedService.open(settings.retriever_address, RETRIEVER, security, RETRIEVER_IDEMPOTENT)
        trainer = BalancedService.open(settings.trainer_address, TRAINER, security, TRAINER_IDEMPOTENT)
        generator = GeneratorClient(GeneratorReplicas(settings.generator_address, GENERATOR, security))
        return cls(
            retriever=retriever_pb2_grpc.RetrieverServiceStub(retriever.channel),
            generator=generator,
            trainer=trainer_pb2_grpc.TrainerServiceStub(trainer.channel),
            balanced={"retriever": retriever, "trainer": trainer},
        )

    async def start(self) -> None:
        await self.generator.replicas.start()

    async def health(self, timeout_s: float) -> dict[str, str]:
        """Each service's grpc.health.v1 status by name (``SERVING``, ``NOT_SERVING``, ``UNREACHABLE``):
        SERVING when at least one replica serves."""
        retriever, generator, trainer = await asyncio.gather(
            self.balanced["retriever"].health(timeout_s),
            self.generator.health(timeout_s),
            self.balanced["trainer"].health(timeout_s),
        )
        return {"retriever": retriever, "generator": generator, "trainer": trainer}

    async def close(self) -> None:
        await self.generator.replicas.close()
        for service in self.balanced.values():
            await service.close()
