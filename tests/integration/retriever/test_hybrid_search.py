"""HYBRID search runs its VECTOR and KEYWORD halves at once and fuses them in the service: on the
real PostgreSQL over gRPC, its hits are exactly the reciprocal rank fusion of the two modes'
candidate lists; a failed query embedding cancels the KEYWORD half and returns every connection."""

from __future__ import annotations

import asyncio

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector_async
from psycopg import sql

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune_common.database import open_pool
from ragtune_retriever.filters import compile_filter
from ragtune_retriever.search import SearchPlan, _fetch, fuse, hybrid_search
from ragtune_retriever.store import get_collection
from tests.integration.retriever.helpers import doc, search, upsert

NOTES = [
    doc("owl", "Owls hunt mice at night with silent feathers."),
    doc("cat", "Cats hunt mice and sleep in the sun most of the day."),
    doc("whale", "Whales sing long songs across the ocean at night."),
    doc("bat", "Bats fly at night and find insects by echo."),
    doc("cow", "Cows graze grass in the field all day long."),
    doc("hawk", "Hawks hunt rabbits from high in the sky by day."),
    doc("mole", "Moles dig tunnels and rarely see the sun."),
]


async def _chunk_ids(database_url: str, collection: str) -> dict[str, int]:
    """Each chunk's primary key (the fusion's tie-break) by its public id ``document#seq``."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT c.document_id || '#' || c.seq, c.id FROM retriever.chunks c"
            " JOIN retriever.collections k ON k.id = c.collection_id WHERE k.name = %s",
            (collection,),
        )
        return dict(await cur.fetchall())


async def test_hybrid_hits_are_the_rrf_of_the_vector_and_keyword_lists(stub, collection, retriever_settings):
    await stub.UpsertDocuments(upsert(collection, *NOTES))
    query, candidates = "which animals hunt at night", retriever_settings.fusion_candidates
    vector = (await stub.Search(search(collection, query, pb.SEARCH_MODE_VECTOR, top_k=candidates))).hits
    keyword = (await stub.Search(search(collection, query, pb.SEARCH_MODE_KEYWORD, top_k=candidates))).hits
    assert vector and keyword and {h.chunk_id for h in keyword} < {h.chunk_id for h in vector}
    hybrid = (await stub.Search(search(collection, query, pb.SEARCH_MODE_HYBRID, top_k=4))).hits

    ids = await _chunk_ids(retriever_settings.database_url, collection)
    by_id = {i: c for c, i in ids.items()}
    expected = fuse([ids[h.chunk_id] for h in vector], [ids[h.chunk_id] for h in keyword], retriever_settings.rrf_k, 4)
    assert [(h.chunk_id, h.vector_rank, h.keyword_rank) for h in hybrid] == [
        (by_id[i], v, k) for i, _, v, k in expected
    ]
    assert [h.score for h in hybrid] == pytest.approx([float(score) for _, score, _, _ in expected])
    assert hybrid[0].vector_rank > 0 and hybrid[0].keyword_rank > 0  # found by both: ranked first


async def test_a_failed_query_embedding_cancels_the_keyword_half(stub, collection, retriever_settings):
    await stub.UpsertDocuments(upsert(collection, *NOTES))
    pool = await open_pool(retriever_settings.database_url, retriever_settings, configure=register_vector_async)
    try:
        row = await get_collection(pool, "default", collection)
        filter_sql, filter_params = compile_filter({})
        plan = SearchPlan("hybrid", None, "hunt night", filter_sql, filter_params, 4, 100, 60, 40)

        async def failing_embedding() -> np.ndarray:
            await asyncio.sleep(0.05)  # the KEYWORD half is under way by now
            raise RuntimeError("embedder down")

        with pytest.raises(RuntimeError, match="embedder down"):
            await hybrid_search(pool, row, plan, failing_embedding())
        for _ in range(100):
            stats = pool.get_stats()
            if stats.get("pool_size", 0) == stats.get("pool_available", 0):
                break
            await asyncio.sleep(0.05)
        assert stats.get("pool_size", 0) == stats.get("pool_available", 0), stats

        async def vector_of(text: str) -> np.ndarray:
            embedded = await stub.Embed(pb.EmbedRequest(inputs=[text]))
            return np.array(embedded.embeddings[0].values, dtype=np.float32)

        hits = await hybrid_search(pool, row, plan, vector_of("hunt night"))
        assert hits and hits[0].vector_rank > 0 and hits[0].keyword_rank > 0
    finally:
        await pool.close()


async def test_searches_are_planned_for_their_own_values(stub, retriever_settings):
    """psycopg prepares a statement after five runs on a connection, and PostgreSQL may then reuse a
    generic plan (limits and query vector unknown): on a 100k-chunk collection that made VECTOR search
    about 2x slower (6.5 against 3.0 ms). Every search statement runs in a transaction that asks for a
    plan made for its own values, and leaves the connection's setting as it was."""
    pool = await open_pool(retriever_settings.database_url, retriever_settings, configure=register_vector_async)
    try:
        mode = sql.SQL("SELECT current_setting('plan_cache_mode'), current_setting('hnsw.ef_search')")
        assert await _fetch(pool, mode, [], 123) == [("force_custom_plan", "123")]
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT current_setting('plan_cache_mode')")
            assert await cur.fetchone() == ("auto",)  # local to the search's transaction
    finally:
        await pool.close()
