"""The gRPC clients: one grpc.aio channel per downstream service, opened once at app start, with a
service config that retries UNAVAILABLE (and nothing else) with backoff. Deadlines are per call."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ragtune.generator.v1 import generator_pb2, generator_pb2_grpc
from ragtune.retriever.v1 import retriever_pb2, retriever_pb2_grpc
from ragtune.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from ragtune_gateway.settings import GatewaySettings

RETRIEVER = retriever_pb2.DESCRIPTOR.services_by_name["RetrieverService"].full_name
GENERATOR = generator_pb2.DESCRIPTOR.services_by_name["GeneratorService"].full_name
TRAINER = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def service_config(service: str) -> str:
    """Retry on UNAVAILABLE only: every other code is an answer, not a transport failure."""
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": service}],
                    "retryPolicy": {
                        "maxAttempts": 4,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "2s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def open_channel(address: str, service: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.enable_retries", 1),
            ("grpc.service_config", service_config(service)),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
        ],
    )


@dataclass
class Downstream:
    """The three services' stubs over their channels."""

    retriever: retriever_pb2_grpc.RetrieverServiceStub
    generator: generator_pb2_grpc.GeneratorServiceStub
    trainer: trainer_pb2_grpc.TrainerServiceStub
    channels: dict[str, tuple[grpc.aio.Channel, str]]

    @classmethod
    def open(cls, settings: GatewaySettings) -> Downstream:
        channels = {
            "retriever": (open_channel(settings.retriever_address, RETRIEVER), RETRIEVER),
            "generator": (open_channel(settings.generator_address, GENERATOR), GENERATOR),
            "trainer": (open_channel(settings.trainer_address, TRAINER), TRAINER),
        }
        return cls(
            retriever=retriever_pb2_grpc.RetrieverServiceStub(channels["retriever"][0]),
            generator=generator_pb2_grpc.GeneratorServiceStub(channels["generator"][0]),
            trainer=trainer_pb2_grpc.TrainerServiceStub(channels["trainer"][0]),
            channels=channels,
        )

    async def health(self, timeout_s: float) -> dict[str, str]:
        """Each service's grpc.health.v1 status by name (``SERVING``, ``NOT_SERVING``, ``UNREACHABLE``)."""

        async def check(channel: grpc.aio.Channel, service: str) -> str:
            try:
                request = health_pb2.HealthCheckRequest(service=service)
                reply = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout_s)
                return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
            except grpc.aio.AioRpcError:
                return "UNREACHABLE"

        names = list(self.channels)
        statuses = await asyncio.gather(*(check(*self.channels[name]) for name in names))
        return dict(zip(names, statuses, strict=True))

    async def close(self) -> None:
        for channel, _ in self.channels.values():
            await channel.close()
