"""The gateway's generator routing over real gRPC servers: an adapter's requests stay on one replica
(its rendezvous choice among the healthy ones), base-model requests go round-robin, and a replica that
refuses before answering, or reports NOT_SERVING, passes the request to the adapter's next replica.

The replicas here are small GeneratorService servers that name themselves in their answers (three
vLLM engines do not fit on a test machine); the generator itself is tested in tests/integration/generator."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune.generator.v1 import generator_pb2_grpc
from ragtune_common.server import GrpcServer, build_server
from ragtune_common.settings import ServiceSettings
from ragtune_gateway.downstream.generator import SERVICE as GENERATOR
from ragtune_gateway.downstream.generator import GeneratorRouter
from ragtune_gateway.downstream.routing import GeneratorReplicas, rendezvous_order
from tests.fixtures.security import SECURITY, SERVICE_TOKEN_SECRET


class NamedGenerator(generator_pb2_grpc.GeneratorServiceServicer):
    """Answers with its own label; can be told to refuse, or to fail after its first delta."""

    def __init__(self, label: str, seen: collections.Counter[tuple[str, str]]) -> None:
        self.label = label
        self.seen = seen
        self.refuse: grpc.StatusCode | None = None
        self.fail_mid_stream = False

    async def GenerateUnary(self, request: gpb.GenerateRequest, context: Any) -> gpb.Completion:
        self.seen[(self.label, request.adapter)] += 1
        if self.refuse is not None:
            await context.abort(self.refuse, f"{self.label} refuses")
        return gpb.Completion(text=self.label, model=request.adapter)

    async def Generate(self, request: gpb.GenerateRequest, context: Any) -> AsyncIterator[gpb.GenerateResponse]:
        self.seen[(self.label, request.adapter)] += 1
        if self.refuse is not None:
            await context.abort(self.refuse, f"{self.label} refuses")
        yield gpb.GenerateResponse(delta=self.label)
        if self.fail_mid_stream:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.label} died mid-stream")
        yield gpb.GenerateResponse(final=gpb.Completion(text=self.label, model=request.adapter))

    async def ListModels(self, request: gpb.ListModelsRequest, context: Any) -> gpb.ListModelsResponse:
        self.seen[(self.label, "ListModels")] += 1
        return gpb.ListModelsResponse()


@contextlib.asynccontextmanager
async def serve(servicer: NamedGenerator) -> AsyncIterator[GrpcServer]:
    settings = ServiceSettings(port=0, service_token=SERVICE_TOKEN_SECRET, drain_notice_s=0)
    bound = await build_server(
        settings,
        lambda server: generator_pb2_grpc.add_GeneratorServiceServicer_to_server(servicer, server),
        [GENERATOR],
    )
    await bound.server.start()
    await bound.set_serving()
    try:
        yield bound
    finally:
        await bound.stop(0)


class Cluster:
    def __init__(self, servers: list[GrpcServer], servicers: dict[str, NamedGenerator], client: GeneratorRouter):
        self.servers = servers
        self.servicers = servicers
        self.client = client
        self.addresses = [f"127.0.0.1:{s.port}" for s in servers]
        self.by_address = dict(zip(self.addresses, servicers.values(), strict=True))
        self.server_by_label = {sv.label: s for sv, s in zip(servicers.values(), servers, strict=True)}

    def choice(self, adapter: str, tenant: str = "t1") -> list[str]:
        """Labels of the adapter's replicas, in its rendezvous order."""
        return [self.by_address[a].label for a in rendezvous_order(f"{tenant}/{adapter}", self.addresses)]

    async def wait_status(self, label: str, status: str) -> None:
        address = next(a for a, sv in self.by_address.items() if sv.label == label)
        for _ in range(100):
            if any(r.address == address and r.status == status for r in self.client.replicas.replicas):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"replica {label} never reported {status}")


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[tuple[Cluster, collections.Counter[tuple[str, str]]]]:
    seen: collections.Counter[tuple[str, str]] = collections.Counter()
    servicers = {label: NamedGenerator(label, seen) for label in ("g1", "g2", "g3")}
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(serve(sv)) for sv in servicers.values()]
        target = ",".join(f"127.0.0.1:{s.port}" for s in servers)
        replicas = GeneratorReplicas(target, GENERATOR, SECURITY)
        await replicas.start()
        client = GeneratorRouter(replicas)
        c = Cluster(servers, servicers, client)
        for label in servicers:
            await c.wait_status(label, "SERVING")
        yield c, seen
        await replicas.close()


def request(adapter: str = "", tenant: str = "t1") -> gpb.GenerateRequest:
    return gpb.GenerateRequest(prompt="hi", adapter=adapter, tenant=tenant)


async def test_an_adapter_stays_on_its_replica_and_the_base_model_goes_round_robin(cluster):
    c, seen = cluster
    adapters = [f"ft:base:a{i}" for i in range(12)]
    for adapter in adapters:
        for _ in range(3):
            reply = await c.client.GenerateUnary(request(adapter), timeout=10)
            assert reply.text == c.choice(adapter)[0]
    homes = {adapter: {label for (label, a) in seen if a == adapter} for adapter in adapters}
    assert all(len(labels) == 1 for labels in homes.values()), homes
    assert len(set().union(*homes.values())) >= 2, "twelve adapters all hashed to one replica"
    seen.clear()
    for _ in range(9):
        await c.client.GenerateUnary(request(), timeout=10)
    assert sorted(seen.values()) == [3, 3, 3] and len(seen) == 3, seen
    # the streaming call follows the same affinity
    events = [e async for e in c.client.Generate(request("ft:base:a0"), timeout=10)]
    assert events[0].delta == c.choice("ft:base:a0")[0]
    assert events[-1].final.text == c.choice("ft:base:a0")[0]


@pytest.mark.parametrize("code", [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE])
async def test_a_refusal_before_any_token_spills_to_the_next_replica(cluster, code):
    c, seen = cluster
    first, second, _ = c.choice("ft:base:busy")
    c.servicers[first].refuse = code
    reply = await c.client.GenerateUnary(request("ft:base:busy"), timeout=10)
    assert reply.text == second
    stream = c.client.Generate(request("ft:base:busy"), timeout=10)
    events = [e async for e in stream]
    assert [events[0].delta, events[-1].final.text] == [second, second]
    assert seen[(first, "ft:base:busy")] == 2 and seen[(second, "ft:base:busy")] == 2
    # every replica refusing: the caller gets the refusal itself
    for servicer in c.servicers.values():
        servicer.refuse = code
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await c.client.GenerateUnary(request("ft:base:busy"), timeout=10)
    assert err.value.code() == code


async def test_an_unhealthy_replica_is_skipped_until_it_serves_again(cluster):
    c, seen = cluster
    first, second, _ = c.choice("ft:base:warm")
    await c.server_by_label[first].set_not_serving()
    await c.wait_status(first, "NOT_SERVING")
    for _ in range(5):
        assert (await c.client.GenerateUnary(request("ft:base:warm"), timeout=10)).text == second
    assert seen[(first, "ft:base:warm")] == 0, "a NOT_SERVING replica was sent requests"
    await c.server_by_label[first].set_serving()
    await c.wait_status(first, "SERVING")
    assert (await c.client.GenerateUnary(request("ft:base:warm"), timeout=10)).text == first


async def test_a_stopped_replica_is_skipped(cluster):
    c, _ = cluster
    first, second, _ = c.choice("ft:base:gone")
    await c.server_by_label[first].stop(0)
    await c.wait_status(first, "UNREACHABLE")
    for _ in range(5):
        assert (await c.client.GenerateUnary(request("ft:base:gone"), timeout=10)).text == second
    assert (await c.client.health(2)) == "SERVING"


async def test_a_stream_that_fails_after_its_first_token_is_not_sent_again(cluster):
    c, seen = cluster
    first, _, _ = c.choice("ft:base:mid")
    c.servicers[first].fail_mid_stream = True
    stream = c.client.Generate(request("ft:base:mid"), timeout=10)
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for event in stream:
            received.append(event.delta)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert received == [first]
    assert sum(n for (label, a), n in seen.items() if a == "ft:base:mid") == 1


async def test_a_dns_target_is_resolved_into_replicas():
    seen: collections.Counter[tuple[str, str]] = collections.Counter()
    async with serve(NamedGenerator("solo", seen)) as bound:
        replicas = GeneratorReplicas(f"dns:///localhost:{bound.port}", GENERATOR, SECURITY, refresh_s=0.2)
        await replicas.start()
        try:
            assert f"127.0.0.1:{bound.port}" in [r.address for r in replicas.replicas]
            reply = await GeneratorRouter(replicas).GenerateUnary(request("ft:base:a"), timeout=10)
            assert reply.text == "solo"
        finally:
            await replicas.close()
