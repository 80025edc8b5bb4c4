"""Entry point: ``ragtune-retriever`` (or ``python -m ragtune_retriever.main``)."""

from __future__ import annotations

import asyncio
import os

from ragtune.retriever.v1 import retriever_pb2, retriever_pb2_grpc
from ragtune_common.logging import configure_logging
from ragtune_common.server import GrpcServer, build_server, run_until_signal
from ragtune_retriever.runtime import RetrieverRuntime
from ragtune_retriever.service import RetrieverServicer
from ragtune_retriever.settings import RetrieverSettings

SERVICE_NAME = retriever_pb2.DESCRIPTOR.services_by_name["RetrieverService"].full_name


async def create_server(settings: RetrieverSettings, runtime: RetrieverRuntime) -> GrpcServer:
    """The retriever's gRPC server, bound but not started; tests bind port 0."""
    servicer = RetrieverServicer(runtime)
    return await build_server(
        settings,
        lambda server: retriever_pb2_grpc.add_RetrieverServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )


async def serve(settings: RetrieverSettings) -> None:
    runtime = RetrieverRuntime(settings)
    bound = await create_server(settings, runtime)
    await run_until_signal(bound, settings, ready=runtime.start, close=runtime.close)


def main() -> None:
    # Before torch loads: idle OpenMP threads sleep instead of spinning. On a busy CPU, spinning
    # made a single query embedding take ~1 s instead of ~25 ms (measured in bench/search_latency).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    settings = RetrieverSettings()
    configure_logging(settings.log_level, settings.log_json, service="retriever")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
