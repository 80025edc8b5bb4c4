"""Collection index precision (``vector_type``) and the bounded keyword candidate set, on the
real PostgreSQL: what the service reports, which index PostgreSQL builds and scans, and how many
chunks a KEYWORD search scores."""

from __future__ import annotations

from typing import Any

import grpc
import psycopg
import pytest
from psycopg import sql

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune_retriever.filters import compile_filter
from ragtune_retriever.search import SearchPlan, build_search_sql
from tests.integration.retriever.helpers import collection_row, doc, search, upsert

ANIMALS = [
    doc("owl", "Owls hunt mice at night with silent feathers."),
    doc("cat", "Cats purr and sleep in the sun most of the day."),
    doc("whale", "Whales sing long songs across the ocean."),
]


def _plan(mode: str, query_vector: Any, keyword_query: str, keyword_budget: int, top_k: int = 10) -> SearchPlan:
    filter_sql, filter_params = compile_filter({})
    return SearchPlan(
        mode=mode,
        query_vector=query_vector,
        keyword_query=keyword_query,
        filter_sql=filter_sql,
        filter_params=filter_params,
        top_k=top_k,
        candidates=top_k,
        rrf_k=60,
        ef_search=40,
        keyword_budget=keyword_budget,
    )


async def _explain(conn: psycopg.AsyncConnection, statement: Any, params: list[Any], force_index: bool) -> dict:
    async with conn.transaction():
        if force_index:  # price out the exact paths, as on a large collection
            await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
            await conn.execute("SET LOCAL enable_sort = off")
        cur = await conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + statement, params)
        row = await cur.fetchone()
    assert row is not None
    return dict(row[0][0]["Plan"])


def _nodes(plan: dict) -> list[dict]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


async def test_default_collection_reports_vector(stub, collection):
    got = (await stub.GetCollection(pb.GetCollectionRequest(name=collection))).collection
    assert got.vector_type == pb.VECTOR_TYPE_VECTOR


async def test_halfvec_collection_builds_and_scans_a_halfvec_index(stub, unique_name, database_url):
    name = unique_name()
    created = await stub.CreateCollection(pb.CreateCollectionRequest(name=name, vector_type=pb.VECTOR_TYPE_HALFVEC))
    try:
        assert created.collection.vector_type == pb.VECTOR_TYPE_HALFVEC
        got = (await stub.GetCollection(pb.GetCollectionRequest(name=name))).collection
        assert got.vector_type == pb.VECTOR_TYPE_HALFVEC
        await stub.UpsertDocuments(upsert(name, *ANIMALS))
        for mode in (pb.SEARCH_MODE_VECTOR, pb.SEARCH_MODE_HYBRID):
            hits = (await stub.Search(search(name, "birds that hunt rodents in the dark", mode, top_k=3))).hits
            assert hits[0].document_id == "owl", mode

        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            row = await collection_row(conn, name)
            assert row.vector_type == "halfvec"
            cur = await conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (f"chunks_hnsw_{row.id}",))
            definition = (await cur.fetchone() or [""])[0]
            assert f"halfvec({row.dimension})" in definition and "halfvec_cosine_ops" in definition, definition
            cur = await conn.execute(
                "SELECT embedding::text FROM retriever.chunks WHERE collection_id = %s AND document_id = 'owl'",
                (row.id,),
            )
            vector = (await cur.fetchone() or [None])[0]
            statement, params = build_search_sql(row, _plan("vector", vector, "", 5000, top_k=2))
            plan = await _explain(conn, statement, params, force_index=True)
            scans = [n for n in _nodes(plan) if n.get("Index Name") == f"chunks_hnsw_{row.id}"]
            assert scans and scans[0]["Node Type"] == "Index Scan", [n["Node Type"] for n in _nodes(plan)]
    finally:
        await stub.DeleteCollection(pb.DeleteCollectionRequest(name=name))


async def test_unknown_vector_type_is_invalid_argument(stub, unique_name):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateCollection(pb.CreateCollectionRequest(name=unique_name(), vector_type=7))  # type: ignore[arg-type]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "vector_type" in err.value.details()


async def test_keyword_search_scores_a_bounded_candidate_set(stub, collection, database_url):
    """300 chunks share a common word, one also has a rare one. With a budget of 100 the rare
    term's chunk is found and ranked first, and at most budget + candidates chunks are scored (the
    rare term's, then the common term's up to the 10 candidates) instead of all 301."""
    common = [doc(f"n{i}", f"Alpha note number {i} about nothing much.") for i in range(300)]
    for start in range(0, 300, 100):
        await stub.UpsertDocuments(upsert(collection, *common[start : start + 100]))
    await stub.UpsertDocuments(upsert(collection, doc("rare", "Alpha zebra crossing.")))

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        row = await collection_row(conn, collection)
        scored = {}
        for budget in (100, 1_000_000):
            statement, params = build_search_sql(row, _plan("keyword", None, "alpha zebra", budget))
            plan = await _explain(conn, statement, params, force_index=False)
            cte = [n for n in _nodes(plan) if n.get("Subplan Name") == "CTE kw_rows"]
            assert len(cte) == 1, [n.get("Subplan Name") for n in _nodes(plan)]
            scored[budget] = cte[0]["Actual Rows"]
            async with conn.transaction():
                hits = await (await conn.execute(statement, params)).fetchall()
            assert hits[0][3] == "rare" and len(hits) == 10, (budget, hits[:2])
    assert scored[1_000_000] == 301
    assert scored[100] <= 100 + 10
