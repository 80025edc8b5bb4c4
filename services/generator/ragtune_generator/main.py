"""Entry point: ``ragtune-generator`` (or ``python -m ragtune_generator.main``)."""

from __future__ import annotations

import asyncio
import sys

from ragtune.generator.v1 import generator_pb2, generator_pb2_grpc
from ragtune_common.logging import configure_logging
from ragtune_common.server import GrpcServer, build_server, run_until_signal
from ragtune_generator.runtime import GeneratorRuntime
from ragtune_generator.service import GeneratorServicer
from ragtune_generator.settings import GeneratorSettings

SERVICE_NAME = generator_pb2.DESCRIPTOR.services_by_name["GeneratorService"].full_name


async def create_server(settings: GeneratorSettings, runtime: GeneratorRuntime) -> GrpcServer:
    """The generator's gRPC server, bound but not started; tests bind port 0."""
    servicer = GeneratorServicer(runtime)
    return await build_server(
        settings,
        lambda server: generator_pb2_grpc.add_GeneratorServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )


async def serve(settings: GeneratorSettings) -> int:
    runtime = GeneratorRuntime(settings)
    bound = await create_server(settings, runtime)
    return await run_until_signal(bound, settings, ready=runtime.start, close=runtime.close, fatal=runtime.fatal)


def main() -> None:
    settings = GeneratorSettings()
    configure_logging(settings.log_level, settings.log_json, service="generator")
    sys.exit(asyncio.run(serve(settings)))


if __name__ == "__main__":
    main()
