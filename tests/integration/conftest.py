"""The retriever served in-process on a real gRPC port over the session's real PostgreSQL."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune.retriever.v1 import retriever_pb2_grpc
from ragtune_common.server import GrpcServer
from ragtune_retriever.main import create_server
from ragtune_retriever.runtime import RetrieverRuntime
from ragtune_retriever.settings import RetrieverSettings


@pytest.fixture(scope="session")
def retriever_settings(database_url: str, state_dir: Path) -> RetrieverSettings:
    return RetrieverSettings(
        database_url=database_url,
        state_dir=state_dir,
        port=0,
        default_max_tokens=64,
        default_overlap_tokens=8,
        grace_period_s=5,
        stream_batch_documents=4,
        max_document_bytes=2 * 1024 * 1024,
    )


@pytest_asyncio.fixture(scope="session")
async def retriever_server(retriever_settings: RetrieverSettings) -> AsyncIterator[GrpcServer]:
    runtime = RetrieverRuntime(retriever_settings)
    bound = await create_server(retriever_settings, runtime)
    await bound.server.start()
    await runtime.start()
    await bound.set_serving()
    yield bound
    await bound.stop(1)
    await runtime.close()


@pytest_asyncio.fixture(scope="session")
async def channel(retriever_server: GrpcServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{retriever_server.port}") as chan:
        yield chan


@pytest.fixture(scope="session")
def stub(channel: grpc.aio.Channel) -> retriever_pb2_grpc.RetrieverServiceStub:
    return retriever_pb2_grpc.RetrieverServiceStub(channel)


def _unique(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def unique_name() -> Callable[..., str]:
    return _unique


@pytest_asyncio.fixture
async def collection(stub: retriever_pb2_grpc.RetrieverServiceStub) -> AsyncIterator[str]:
    """A fresh collection for one test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await stub.CreateCollection(pb.CreateCollectionRequest(name=name))
    yield name
    with contextlib.suppress(grpc.aio.AioRpcError):  # the test may have deleted it
        await stub.DeleteCollection(pb.DeleteCollectionRequest(name=name))
