"""Metadata filters evaluated by PostgreSQL through Search, and iterative index scans."""

from __future__ import annotations

import grpc
import pytest

from ragtune.retriever.v1 import retriever_pb2 as pb
from tests.integration.helpers import doc, search, upsert

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
