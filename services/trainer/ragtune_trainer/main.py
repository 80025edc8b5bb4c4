"""Entry point: ``ragtune-trainer`` (or ``python -m ragtune_trainer.main``)."""

from __future__ import annotations

import asyncio

from ragtune.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from ragtune_common.logging import configure_logging
from ragtune_common.server import GrpcServer, build_server, run_until_signal
from ragtune_trainer.runtime import TrainerRuntime
from ragtune_trainer.service import TrainerServicer
from ragtune_trainer.settings import TrainerSettings

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


async def create_server(settings: TrainerSettings, runtime: TrainerRuntime) -> GrpcServer:
    """The trainer's gRPC server, bound but not started; tests bind port 0."""
    servicer = TrainerServicer(runtime)
    return await build_server(
        settings,
        lambda server: trainer_pb2_grpc.add_TrainerServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )


async def serve(settings: TrainerSettings) -> None:
    runtime = TrainerRuntime(settings)
    bound = await create_server(settings, runtime)
    await run_until_signal(bound, settings, ready=runtime.start, close=runtime.close)


def main() -> None:
    settings = TrainerSettings()
    configure_logging(settings.log_level, settings.log_json, service="trainer")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
