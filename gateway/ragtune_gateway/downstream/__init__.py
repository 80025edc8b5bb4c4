"""Typed clients of the three services, opened once at app start over
:mod:`ragtune_common.channels` (service token, optional TLS). Nothing outside this package touches
a gRPC stub: each client method owns its deadline, the request-id metadata, the retries of
idempotent calls (channel configuration) and the mapping of failures to
:class:`~ragtune_gateway.errors.ApiError`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ragtune.retriever.v1 import retriever_pb2_grpc
from ragtune.trainer.v1 import trainer_pb2_grpc
from ragtune_common.channels import ChannelSecurity
from ragtune_gateway.downstream import generator, retriever, trainer
from ragtune_gateway.downstream.channels import BalancedChannel
from ragtune_gateway.downstream.generator import GeneratorClient, GeneratorRouter
from ragtune_gateway.downstream.retriever import RetrieverClient
from ragtune_gateway.downstream.routing import GeneratorReplicas
from ragtune_gateway.downstream.trainer import TrainerClient
from ragtune_gateway.settings import GatewaySettings

__all__ = ["Downstream", "GeneratorClient", "RetrieverClient", "TrainerClient"]


@dataclass
class Downstream:
    retriever: RetrieverClient
    generator: GeneratorClient
    trainer: TrainerClient
    channels: dict[str, BalancedChannel]  # retriever and trainer; the generator's are its router's

    @classmethod
    def open(cls, settings: GatewaySettings) -> Downstream:
        """Opens the channels; the generator's health watches start with the running event loop."""
        security = ChannelSecurity.from_settings(settings)
        rpc_s, ingest_s = settings.rpc_timeout_s, settings.ingest_timeout_s
        retriever_channel = BalancedChannel.open(
            settings.retriever_address, retriever.SERVICE, security, retriever.IDEMPOTENT
        )
        trainer_channel = BalancedChannel.open(settings.trainer_address, trainer.SERVICE, security, trainer.IDEMPOTENT)
        router = GeneratorRouter(GeneratorReplicas(settings.generator_address, generator.SERVICE, security))
        return cls(
            retriever=RetrieverClient(
                retriever_pb2_grpc.RetrieverServiceStub(retriever_channel.channel), rpc_s, ingest_s
            ),
            generator=GeneratorClient(router, rpc_s, settings.generate_timeout_s),
            trainer=TrainerClient(trainer_pb2_grpc.TrainerServiceStub(trainer_channel.channel), rpc_s, ingest_s),
            channels={"retriever": retriever_channel, "trainer": trainer_channel},
        )

    async def start(self) -> None:
        await self.generator.router.replicas.start()

    async def health(self, timeout_s: float) -> dict[str, str]:
        """Each service's grpc.health.v1 status by name (``SERVING``, ``NOT_SERVING``, ``UNREACHABLE``):
        SERVING when at least one replica serves."""
        retriever_status, generator_status, trainer_status = await asyncio.gather(
            self.channels["retriever"].health(timeout_s),
            self.generator.health(timeout_s),
            self.channels["trainer"].health(timeout_s),
        )
        return {"retriever": retriever_status, "generator": generator_status, "trainer": trainer_status}

    async def close(self) -> None:
        await self.generator.router.replicas.close()
        for channel in self.channels.values():
            await channel.close()
