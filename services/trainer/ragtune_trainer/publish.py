"""Publishing: the generator's LoadAdapter makes a finished adapter servable without a restart."""

from __future__ import annotations

import json
from pathlib import Path

import grpc

from ragtune.generator.v1 import generator_pb2, generator_pb2_grpc
from ragtune_common.channels import ChannelSecurity, open_channel

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)


class PublishError(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def check_adapter_dir(path: Path) -> None:
    """The adapter directory is complete: its config and weights are there."""
    config = path / "adapter_config.json"
    if not config.is_file() or not any(path.glob("adapter_model.*")):
        raise PublishError(f"adapter directory {path} is incomplete", retryable=False)
    json.loads(config.read_text())


GENERATOR = generator_pb2.DESCRIPTOR.services_by_name["GeneratorService"].full_name


async def load_adapter(
    address: str, name: str, path: Path, tenant: str, timeout_s: float, security: ChannelSecurity
) -> bool:
    """Load the adapter into the generator under ``name``; True if it was newly loaded."""
    check_adapter_dir(path)
    request = generator_pb2.LoadAdapterRequest(name=name, path=str(path), tenant=tenant)
    # LoadAdapter of the same adapter again is a no-op: safe to retry on another replica
    async with open_channel(address, GENERATOR, security, idempotent=("LoadAdapter",)) as channel:
        try:
            reply = await generator_pb2_grpc.GeneratorServiceStub(channel).LoadAdapter(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise PublishError(
                f"generator at {address}: {exc.code().name}: {exc.details()}", retryable=exc.code() in RETRYABLE
            ) from None
    return bool(reply.newly_loaded)
