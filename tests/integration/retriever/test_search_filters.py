"""Metadata filters evaluated by PostgreSQL through Search, and iterative index scans."""

from __future__ import annotations

from typing import Any

import grpc
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune_common.errors import InvalidArgument
from ragtune_retriever.filters import compile_filter
from tests.integration.retriever.helpers import collection_row, doc, search, upsert
from tests.unit.retriever.test_filters import JSON, NAMES

BOOKS = [
    doc("b1", "A history of the Roman empire and its roads.", lang="en", year=1999, tags="history", pages=320),
    doc("b2", "Une histoire de la cuisine française.", lang="fr", year=2005, tags="food", author={"name": "Ann"}),
    doc("b3", "The chemistry of cooking: why bread rises.", lang="en", year=2012, tags="food", pages=210),
    doc("b4", "Eine Geschichte der Eisenbahn in Europa.", lang="de", year=2020, author={"name": "Bo"}),
    doc("b5", "Birdwatching for beginners in northern forests.", lang="en", year="unknown", draft=True),
]


@pytest.fixture
async def books(stub, collection):
    await stub.UpsertDocuments(upsert(collection, *BOOKS))
    return collection


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"lang": "en"}, {"b1", "b3", "b5"}),
        ({"lang": {"$eq": "fr"}}, {"b2"}),
        ({"lang": {"$ne": "en"}}, {"b2", "b4"}),
        ({"year": {"$gt": 2005}}, {"b3", "b4"}),
        ({"year": {"$gte": 2005}}, {"b2", "b3", "b4"}),
        ({"year": {"$lt": 2005}}, {"b1"}),
        ({"year": {"$lte": 2005, "$gt": 1999}}, {"b2"}),
        ({"lang": {"$in": ["fr", "de"]}}, {"b2", "b4"}),
        ({"lang": {"$nin": ["fr", "de"]}}, {"b1", "b3", "b5"}),
        ({"pages": {"$exists": True}}, {"b1", "b3"}),
        ({"draft": {"$exists": False}}, {"b1", "b2", "b3", "b4"}),
        ({"author.name": "Bo"}, {"b4"}),
        ({"$or": [{"lang": "fr"}, {"$and": [{"lang": "en"}, {"pages": {"$lt": 300}}]}]}, {"b2", "b3"}),
        ({"$and": [{"tags": "food"}, {"$or": [{"year": 2012}, {"author.name": "Ann"}]}]}, {"b2", "b3"}),
        ({"lang": "en", "draft": True}, {"b5"}),
    ],
)
async def test_each_operator(stub, books, spec, expected):
    for mode in (pb.SEARCH_MODE_VECTOR, pb.SEARCH_MODE_HYBRID):
        hits = (await stub.Search(search(books, "books about history and food", mode, top_k=20, filter=spec))).hits
        assert {h.document_id for h in hits} == expected, (mode, spec)


async def test_keyword_mode_applies_filter(stub, books):
    hits = (await stub.Search(search(books, "history", pb.SEARCH_MODE_KEYWORD, filter={"lang": "en"}))).hits
    assert [h.document_id for h in hits] == ["b1"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"year": {"$regex": "x"}}, "filter.year.$regex"),
        ({"$and": [{"a": 1}, {"year": {"$gt": [1]}}]}, "filter.$and[1].year.$gt"),
        ({"lang": {"$in": []}}, "filter.lang.$in"),
        ({"$or": "x"}, "filter.$or"),
        ({"pages": {"$exists": "yes"}}, "filter.pages.$exists"),
    ],
)
async def test_bad_filters_name_the_problem(stub, books, spec, field):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Search(search(books, "anything", filter=spec))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details()


async def test_selective_filter_still_returns_k_rows(stub, collection, database_url):
    """600 chunks, 12 in the rare group, a tiny ef_search: Search returns k rare rows. At this size
    PostgreSQL's planner may prefer an exact scan of the collection (a bitmap scan and a sort, no
    HNSW; which one depends on its statistics), so Search alone proves nothing about the index. The
    HNSW path, which the planner takes on large collections, is therefore checked on the retriever's
    own statement with the other access paths priced out: EXPLAIN ANALYZE shows the collection's
    HNSW index scanned, relaxed iterative scans return k rare rows, and with iterative scans off the
    same plan comes up short."""
    documents = [
        doc(
            f"n{i}",
            f"Note {i}: the weather on day {i} was mild with {i % 7} clouds.",
            group="rare" if i % 50 == 0 else "common",
        )
        for i in range(600)
    ]
    for start in range(0, 600, 200):
        await stub.UpsertDocuments(upsert(collection, *documents[start : start + 200]))
    request = search(
        collection, "weather on a mild day", pb.SEARCH_MODE_VECTOR, top_k=10, ef_search=10, filter={"group": "rare"}
    )
    hits = (await stub.Search(request)).hits
    assert len(hits) == 10
    assert all(h.metadata["group"] == "rare" for h in hits)

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        statement, params, index = await _search_statement(conn, collection, {"group": "rare"}, top_k=10)
        plan = await _explain(conn, statement, params, iterative="relaxed_order")
        scans = [n for n in _nodes(plan) if n.get("Index Name") == index]
        assert scans and all(n["Node Type"] == "Index Scan" for n in scans), _node_types(plan)
        assert not [n for n in _nodes(plan) if n.get("Relation Name") == "chunks" and "Seq Scan" in n["Node Type"]]
        assert sum(n["Actual Rows"] for n in scans) >= 10, "the index scan went past ef_search to find k rare rows"
        short = await _run(conn, statement, params, iterative="off")
        assert len(short) < 10, "without iterative scans ef_search 10 alone would not reach the rare rows"


async def _search_statement(
    conn: psycopg.AsyncConnection, collection: str, spec: dict[str, Any], top_k: int
) -> tuple[Any, list[Any], str]:
    """The statement the retriever runs for a VECTOR search of ``collection`` (query vector: a
    stored chunk's embedding), its parameters, and the collection's HNSW index name."""
    from ragtune_retriever.search import SearchPlan, build_search_sql

    row = await collection_row(conn, collection)
    cur = await conn.execute(
        "SELECT embedding::text FROM retriever.chunks WHERE collection_id = %s AND document_id = 'n1'", (row.id,)
    )
    vector = (await cur.fetchone() or [None])[0]
    filter_sql, filter_params = compile_filter(spec)
    plan = SearchPlan(
        mode="vector",
        query_vector=vector,  # type: ignore[arg-type]  # pgvector's text form
        keyword_query="",
        filter_sql=filter_sql,
        filter_params=filter_params,
        top_k=top_k,
        candidates=top_k,
        rrf_k=60,
        ef_search=10,
    )
    statement, params = build_search_sql(row, plan)
    return statement, params, f"chunks_hnsw_{row.id}"


async def _configure(conn: psycopg.AsyncConnection, iterative: str, force_index: bool) -> None:
    """The retriever's per-query settings; ``force_index`` prices out the exact paths (sequential
    and bitmap scans, sorting) so the planner takes the HNSW index as it does on large collections."""
    await conn.execute(
        "SELECT set_config('hnsw.ef_search', '10', true), set_config('hnsw.iterative_scan', %s, true)", (iterative,)
    )
    if force_index:
        await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        await conn.execute("SET LOCAL enable_sort = off")


async def _explain(
    conn: psycopg.AsyncConnection, statement: Any, params: list[Any], iterative: str, force_index: bool = True
) -> dict:
    async with conn.transaction():
        await _configure(conn, iterative, force_index)
        cur = await conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + statement, params)
        row = await cur.fetchone()
    assert row is not None
    return dict(row[0][0]["Plan"])


async def _run(conn: psycopg.AsyncConnection, statement: Any, params: list[Any], iterative: str) -> list[Any]:
    async with conn.transaction():
        await _configure(conn, iterative, force_index=True)
        return await (await conn.execute(statement, params)).fetchall()


def _nodes(plan: dict) -> list[dict]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


def _node_types(plan: dict) -> list[str]:
    return [f"{n['Node Type']} {n.get('Index Name') or n.get('Relation Name') or ''}" for n in _nodes(plan)]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"$or": [{"k": i} for i in range(40_000)]}, "filter.$or["),  # was 80,000 parameters: UNAVAILABLE
        ({"a\x00b": 1}, "filter.a\\x00b"),  # was a psycopg DataError: INTERNAL
        ({"lang": "e\x00n"}, "filter.lang"),
        ({"lang": {"$in": ["en", "\x00"]}}, "filter.lang.$in[1]"),
    ],
)
async def test_huge_or_nul_filters_are_invalid_argument(stub, books, spec, field):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Search(search(books, "anything", filter=spec))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert field in err.value.details()


# Rows of every JSON type under the keys the generated filters name.
_ROWS = [
    {},
    {"a": 1, "b": "x", "c": True},
    {"a": {"b": [1, "two", None]}, "$eq": 2.5, "x y": None},
    {"a": "1", "0": [[]], "%s": "{}", "'; DROP": False},
]
_STATEMENT = "SELECT count(*) FROM (VALUES {}) AS c(metadata) WHERE {}"


@pytest.fixture(scope="module")
def sync_conn(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(NAMES, JSON, max_size=5) | JSON)
def test_compiled_filters_run_in_postgresql(sync_conn, spec: Any) -> None:
    """Whatever the compiler accepts, PostgreSQL executes (over rows of every JSON type)."""
    try:
        expr, params = compile_filter(spec)
    except InvalidArgument:
        return
    rows = sql.SQL(", ").join(sql.SQL("({}::jsonb)").format(sql.Placeholder()) for _ in _ROWS)
    statement = sql.SQL(_STATEMENT).format(rows, expr)
    count = sync_conn.execute(statement, [*(Jsonb(r) for r in _ROWS), *params]).fetchone()[0]
    assert 0 <= count <= len(_ROWS)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"a": 1}, 1),
        ({"a.b.1": "two"}, 1),
        ({"$or": [{"b": "x"}, {"'; DROP": False}]}, 2),
        ({"%s": {"$in": ["{}", "y"]}}, 1),
        ({"a": {"$exists": True}, "c": {"$ne": True}}, 2),
        ({"x y": None}, 4),
    ],
)
def test_compiled_filters_select_the_right_rows(sync_conn, spec, expected) -> None:
    expr, params = compile_filter(spec)
    rows = sql.SQL(", ").join(sql.SQL("({}::jsonb)").format(sql.Placeholder()) for _ in _ROWS)
    statement = sql.SQL(_STATEMENT).format(rows, expr)
    assert sync_conn.execute(statement, [*(Jsonb(r) for r in _ROWS), *params]).fetchone()[0] == expected
