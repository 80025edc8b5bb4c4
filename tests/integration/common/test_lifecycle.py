"""Health transitions, graceful shutdown during a stream, and the database going away and back."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune.retriever.v1 import retriever_pb2_grpc
from ragtune_retriever.main import create_server
from ragtune_retriever.runtime import RetrieverRuntime
from tests.fixtures.security import direct_channel
from tests.integration.retriever.helpers import doc, search, upsert

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE = "ragtune.retriever.v1.RetrieverService"


async def health(channel: grpc.aio.Channel, service: str = "") -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return reply.status


async def test_health_transitions_and_graceful_shutdown_during_stream(retriever_settings):
    settings = retriever_settings.model_copy(update={"port": 0})
    runtime = RetrieverRuntime(settings)
    bound = await create_server(settings, runtime)
    await bound.server.start()
    async with direct_channel(bound.port, SERVICE) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        assert await health(channel) == NOT_SERVING
        assert await health(channel, SERVICE) == NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:  # calls before ready: retryable, not a crash
            await stub.ListCollections(pb.ListCollectionsRequest())
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        await runtime.start()
        await bound.set_serving()
        assert await health(channel) == SERVING and await health(channel, SERVICE) == SERVING

        name = "lifecycle-stream"
        await stub.CreateCollection(pb.CreateCollectionRequest(name=name))
        release = asyncio.Event()

        async def slow_requests():
            yield upsert(name, *[doc(f"a{i}", f"First batch document {i} about lakes.") for i in range(4)])
            await release.wait()  # the server starts draining while this stream is open
            yield upsert(name, *[doc(f"b{i}", f"Second batch document {i} about hills.") for i in range(4)])

        call = stub.StreamUpsertDocuments(slow_requests())
        await asyncio.sleep(1.0)
        stopping = asyncio.create_task(bound.stop(grace_s=30, notice_s=1.0))
        await asyncio.sleep(0.3)
        assert await health(channel) == NOT_SERVING, "draining server still reports SERVING"
        release.set()
        response = await call
        assert response.created == 8, "the in-flight stream was not allowed to finish"
        await stopping
    await runtime.close()


async def test_database_down_is_unavailable_then_recovers(stub, collection, database_control):
    """Runs on the embedded server (pg_ctl stop/start) and on a container (docker stop/start) alike."""
    await stub.UpsertDocuments(upsert(collection, doc("d", "Lighthouses guide ships along rocky coasts.")))
    await asyncio.to_thread(database_control.stop)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Search(search(collection, "lighthouse"))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "database" in err.value.details()
    finally:
        await asyncio.to_thread(database_control.start)
    for _ in range(20):  # the pool replaces its dead connections
        try:
            hits = (await stub.Search(search(collection, "lighthouse"))).hits
            break
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
            await asyncio.sleep(0.5)
    assert hits and hits[0].document_id == "d"
