"""Callers balance over replicas: two real retriever servers behind one address list get the calls
between them, and one of them draining in the middle of a run of calls fails none of them.

An abrupt death is tested with real processes killed with SIGKILL (tests/faults/test_fault_matrix.py:
200 searches through the gateway while one of two retriever processes dies, none failed). In-process,
``server.stop(None)`` cancels in-flight calls (CANCELLED, which no client should retry), which is not
what a dead process looks like to its callers (UNAVAILABLE, retried for idempotent calls)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest_asyncio

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune.retriever.v1 import retriever_pb2_grpc
from ragtune_common.channels import open_channel
from ragtune_common.server import GrpcServer, build_server
from ragtune_gateway.downstream.retriever import IDEMPOTENT as RETRIEVER_IDEMPOTENT
from ragtune_retriever.main import SERVICE_NAME
from ragtune_retriever.runtime import RetrieverRuntime
from ragtune_retriever.service import RetrieverServicer
from ragtune_retriever.settings import RetrieverSettings
from tests.fixtures.security import SECURITY
from tests.fixtures.serving import serving


class CountingServicer(RetrieverServicer):
    """The real servicer, counting the ListCollections calls this replica answered."""

    def __init__(self, runtime: RetrieverRuntime, counts: collections.Counter[str], label: str) -> None:
        super().__init__(runtime)
        self.counts = counts
        self.label = label

    async def ListCollections(self, request: pb.ListCollectionsRequest, context: Any) -> pb.ListCollectionsResponse:
        self.counts[self.label] += 1
        return await super().ListCollections(request, context)


@contextlib.asynccontextmanager
async def replica(
    settings: RetrieverSettings, counts: collections.Counter[str], label: str
) -> AsyncIterator[GrpcServer]:
    runtime = RetrieverRuntime(settings)
    servicer = CountingServicer(runtime, counts, label)
    bound = await build_server(
        settings,
        lambda server: retriever_pb2_grpc.add_RetrieverServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )
    async with serving(bound, runtime) as served:
        yield served


@pytest_asyncio.fixture
async def two_replicas(
    retriever_settings: RetrieverSettings,
) -> AsyncIterator[tuple[list[GrpcServer], collections.Counter[str]]]:
    counts: collections.Counter[str] = collections.Counter()
    settings = retriever_settings.model_copy(update={"port": 0, "drain_notice_s": 0.5})
    async with replica(settings, counts, "a") as a, replica(settings, counts, "b") as b:
        yield [a, b], counts


async def test_calls_land_on_both_replicas(two_replicas):
    (a, b), counts = two_replicas
    target = f"127.0.0.1:{a.port},127.0.0.1:{b.port}"
    async with open_channel(target, SERVICE_NAME, SECURITY, idempotent=RETRIEVER_IDEMPOTENT) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        for _ in range(40):
            await stub.ListCollections(pb.ListCollectionsRequest(), timeout=10)
    assert counts["a"] + counts["b"] == 40
    assert counts["a"] >= 10 and counts["b"] >= 10, counts  # round_robin: about 20 each


async def test_a_replica_reporting_not_serving_gets_no_calls(two_replicas):
    (a, b), counts = two_replicas
    async with open_channel(f"127.0.0.1:{a.port},127.0.0.1:{b.port}", SERVICE_NAME, SECURITY) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        await stub.ListCollections(pb.ListCollectionsRequest(), timeout=10)
        await a.set_not_serving()  # starting, or draining: client-side health checking skips it
        await asyncio.sleep(0.3)
        counts.clear()
        for _ in range(20):
            await stub.ListCollections(pb.ListCollectionsRequest(), timeout=10)
        assert counts == {"b": 20}
        await a.set_serving()
        await asyncio.sleep(0.3)
        for _ in range(20):
            await stub.ListCollections(pb.ListCollectionsRequest(), timeout=10)
        assert counts["a"] >= 5, counts


async def _calls_while_one_stops(two_replicas, stop) -> tuple[int, list[str], collections.Counter[str]]:
    """200 calls from 4 workers, replica a stopped after the 60th has started: (calls answered,
    failures, calls each replica's servicer took)."""
    (a, b), counts = two_replicas
    failures: list[str] = []
    started = answered = 0
    under_way = asyncio.Event()
    async with open_channel(
        f"127.0.0.1:{a.port},127.0.0.1:{b.port}", SERVICE_NAME, SECURITY, idempotent=RETRIEVER_IDEMPOTENT
    ) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        await stub.ListCollections(pb.ListCollectionsRequest(), timeout=10)
        counts.clear()

        async def worker() -> None:
            nonlocal started, answered
            while started < 200:
                started += 1
                if started == 60:
                    under_way.set()
                try:
                    await stub.ListCollections(pb.ListCollectionsRequest(), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    failures.append(f"{exc.code().name}: {exc.details()}")
                else:
                    answered += 1

        workers = [asyncio.ensure_future(worker()) for _ in range(4)]
        await under_way.wait()
        stopping = asyncio.ensure_future(stop(a))
        await asyncio.gather(*workers)
        await stopping
    return answered, failures, counts


async def test_graceful_stop_of_one_replica_during_200_calls_fails_none(two_replicas):
    answered, failures, counts = await _calls_while_one_stops(two_replicas, lambda a: a.stop(5, notice_s=0.5))
    assert failures == [] and answered == 200  # every call answered: none failed, none lost
    assert counts["a"] + counts["b"] == 200, counts  # each by one replica (a's in-flight calls finish)
    assert counts["a"] > 0 and counts["b"] > counts["a"], counts  # b took over once a left
