"""Creating vector stores under the per-tenant cap, over real PostgreSQL and a real gRPC retriever
stand-in (a small RetrieverService that keeps its collections in memory and can be told to answer
CreateCollection slowly): a slow retriever pins no database connection or lock while the call is
in flight, and the cap holds exactly when many creations race on two gateway replicas (409: only a
delete frees a place)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest_asyncio

from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune.retriever.v1 import retriever_pb2_grpc
from ragtune_gateway.downstream.retriever import SERVICE as RETRIEVER
from tests.integration.gateway.caps_in_flight import Gate, assert_nothing_pinned_while_held, race, serve_stand_in
from tests.integration.gateway.conftest import GatewayFactory

STORES = "/v1/vector_stores"


class MemoryRetriever(retriever_pb2_grpc.RetrieverServiceServicer):
    """Collections in memory; CreateCollection passes ``gate`` first."""

    def __init__(self) -> None:
        self.collections: dict[str, list[rpb.Collection]] = {}
        self.gate = Gate()

    async def CreateCollection(
        self, request: rpb.CreateCollectionRequest, context: Any
    ) -> rpb.CreateCollectionResponse:
        await self.gate.passage()
        collection = rpb.Collection(tenant=request.tenant, name=request.name, metadata=request.metadata)
        collection.created_at.GetCurrentTime()
        self.collections.setdefault(request.tenant, []).append(collection)
        return rpb.CreateCollectionResponse(collection=collection)

    async def ListCollections(self, request: rpb.ListCollectionsRequest, context: Any) -> rpb.ListCollectionsResponse:
        return rpb.ListCollectionsResponse(collections=self.collections.get(request.tenant, []))


@pytest_asyncio.fixture(loop_scope="session")
async def retriever() -> AsyncIterator[tuple[MemoryRetriever, str]]:
    servicer = MemoryRetriever()
    register = partial(retriever_pb2_grpc.add_RetrieverServiceServicer_to_server, servicer)
    async with serve_stand_in(register, RETRIEVER) as address:
        yield servicer, address


async def test_a_slow_retriever_pins_no_connection(
    start_gateway: GatewayFactory, retriever: tuple[MemoryRetriever, str], gateway_database_url: str
) -> None:
    servicer, address = retriever
    pool_size = 2
    gateway = await start_gateway(
        retriever_address=address, db_pool_min=1, db_pool_max=pool_size, db_connect_timeout_s=2
    )
    tenant, _, key = await gateway.new_tenant()
    async with gateway.client(key, timeout=30) as http:
        create = partial(http.post, STORES, json={"name": "s"})
        await assert_nothing_pinned_while_held(
            http, servicer.gate, create, pool_size + 2, gateway_database_url, "vector-stores"
        )
    assert len(servicer.collections[tenant]) == pool_size + 2


async def test_the_cap_holds_when_creations_race_on_two_replicas(
    start_gateway: GatewayFactory, retriever: tuple[MemoryRetriever, str]
) -> None:
    servicer, address = retriever
    cap = 2
    replicas = [await start_gateway(retriever_address=address, max_vector_stores_per_tenant=cap) for _ in range(2)]
    tenant, _, key = await replicas[0].new_tenant()
    async with replicas[0].client(key) as a, replicas[1].client(key) as b:
        answers = await race(servicer.gate, [partial(c.post, STORES, json={"name": "s"}) for c in [a, b] * 4])
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * cap + [409] * (8 - cap), [r.text for r in answers]
    assert len(servicer.collections[tenant]) == cap
    refused = next(r for r in answers if r.status_code == 409)
    error = refused.json()["error"]
    assert error["code"] == "limit_reached" and "Retry-After" not in refused.headers
    assert "RAGTUNE_GATEWAY_MAX_VECTOR_STORES_PER_TENANT" in error["message"] and "Delete one first" in error["message"]
