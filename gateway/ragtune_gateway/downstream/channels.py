"""A service's balanced channel, and grpc.health.v1 checks over it.

Retriever and trainer: one channel each, balanced per call (round_robin over healthy replicas)
across an address list or a ``dns:///`` target; UNAVAILABLE is retried, on another replica, for
the idempotent methods the client names and for no other. A second channel without health
checking reaches replicas that report NOT_SERVING, so /readyz can tell 'not ready' from 'not there'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ragtune_common.channels import ChannelSecurity, open_channel


async def check_health(channel: grpc.aio.Channel, service: str, timeout_s: float) -> str:
    """``SERVING``, ``NOT_SERVING`` (or another health status name), or ``UNREACHABLE``."""
    try:
        request = health_pb2.HealthCheckRequest(service=service)
        reply = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout_s)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.aio.AioRpcError:
        return "UNREACHABLE"


@dataclass
class BalancedChannel:
    name: str  # the full gRPC service name, as grpc.health knows it
    channel: grpc.aio.Channel
    probe: grpc.aio.Channel

    @classmethod
    def open(cls, target: str, name: str, security: ChannelSecurity, idempotent: Sequence[str]) -> BalancedChannel:
        return cls(
            name,
            open_channel(target, name, security, idempotent=idempotent),
            open_channel(target, name, security, health_check=False),
        )

    async def health(self, timeout_s: float) -> str:
        status = await check_health(self.channel, self.name, timeout_s)
        return status if status == "SERVING" else await check_health(self.probe, self.name, timeout_s)

    async def close(self) -> None:
        await self.channel.close()
        await self.probe.close()
