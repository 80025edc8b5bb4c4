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
from tests.integration.helpers import doc, search, upsert
from tests.unit.test_filters import JSON, NAMES

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


async def test_selective_filter_still_returns_k_rows(stub, collection):
    """600 chunks, 12 in the rare group, a tiny ef_search: iterative scans must keep going."""
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
