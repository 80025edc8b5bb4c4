"""Bad input gets a clear status naming the field, nothing is half-written, the server keeps serving."""

from __future__ import annotations

import grpc
import pytest

from ragtune.retriever.v1 import retriever_pb2 as pb
from tests.integration.helpers import doc, minimal_pdf, search, upsert


async def expect(call, code: grpc.StatusCode, *fragments: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    for fragment in fragments:
        assert fragment in err.value.details()
    assert "Traceback" not in err.value.details()
    return err.value.details()


async def document_ids(stub, collection: str) -> list[str]:
    listed = await stub.ListDocuments(pb.ListDocumentsRequest(collection=collection, page={"page_size": 1000}))
    return [d.id for d in listed.documents]


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({"query": "   "}, "query"),
        ({"query": "x", "top_k": 1001}, "top_k"),
        ({"query": "x", "top_k": -1}, "top_k"),
        ({"query": "x", "ef_search": 0}, "ef_search"),
        ({"query": "x" * 9000}, "query"),
    ],
)
async def test_bad_search_requests(stub, collection, request_kwargs, field):
    request = pb.SearchRequest(collections=[collection], **request_kwargs)
    await expect(stub.Search(request), grpc.StatusCode.INVALID_ARGUMENT, field)


async def test_unknown_collection(stub):
    await expect(stub.Search(search("no-such-collection", "x")), grpc.StatusCode.NOT_FOUND, "collections[0]")
    await expect(
        stub.UpsertDocuments(upsert("no-such-collection", doc("a", "text"))), grpc.StatusCode.NOT_FOUND, "collection"
    )
    await expect(stub.Search(pb.SearchRequest(query="x")), grpc.StatusCode.INVALID_ARGUMENT, "collections")


async def test_bad_collection_requests(stub, unique_name):
    await expect(
        stub.CreateCollection(pb.CreateCollectionRequest(name="bad name!")), grpc.StatusCode.INVALID_ARGUMENT, "name"
    )
    await expect(
        stub.CreateCollection(pb.CreateCollectionRequest(name=unique_name(), embedding_model="/nowhere/model")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "embedding_model",
    )
    await expect(
        stub.CreateCollection(pb.CreateCollectionRequest(name=unique_name(), chunking={"max_tokens": 4})),
        grpc.StatusCode.INVALID_ARGUMENT,
        "chunking.max_tokens",
    )
    await expect(
        stub.CreateCollection(
            pb.CreateCollectionRequest(name=unique_name(), chunking={"max_tokens": 64, "overlap_tokens": 64})
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "chunking.overlap_tokens",
    )
    await expect(
        stub.CreateCollection(pb.CreateCollectionRequest(tenant="a b", name=unique_name())),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tenant",
    )


@pytest.mark.parametrize(
    ("bad", "fragments"),
    [
        (pb.DocumentInput(id="bad", data=b"caf\xc3(", mime_type="text/plain"), ("documents[1].data", "UTF-8")),
        (pb.DocumentInput(id="bad", data=b"%PDF-1.4 garbage", mime_type="application/pdf"), ("documents[1]", "PDF")),
        (pb.DocumentInput(id="bad", text="   \n  "), ("documents[1]",)),
        (pb.DocumentInput(id="bad"), ("documents[1].body",)),
        (pb.DocumentInput(id="bad", text="x", mime_type="image/png"), ("documents[1].mime_type",)),
        (pb.DocumentInput(id="x" * 300, text="x"), ("documents[1].id",)),
        (pb.DocumentInput(id="bad", data=b"a" * (2 * 1024 * 1024 + 1)), ("documents[1].body", "limit")),
    ],
)
async def test_bad_document_rejects_whole_batch(stub, collection, bad, fragments):
    good = doc("good", "A perfectly fine document about rivers.")
    await expect(stub.UpsertDocuments(upsert(collection, good, bad)), grpc.StatusCode.INVALID_ARGUMENT, *fragments)
    assert await document_ids(stub, collection) == [], "a rejected batch left documents behind"
    # and the server keeps serving
    response = await stub.UpsertDocuments(upsert(collection, good))
    assert response.created == 1


async def test_duplicate_ids_in_one_batch(stub, collection):
    await expect(
        stub.UpsertDocuments(upsert(collection, doc("a", "one"), doc("a", "two"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "documents[1].id",
    )
    assert await document_ids(stub, collection) == []


async def test_pdf_sent_as_text_is_rejected(stub, collection):
    pdf_text = minimal_pdf("hello").decode("latin-1")
    await expect(
        stub.UpsertDocuments(upsert(collection, pb.DocumentInput(id="p", text=pdf_text, mime_type="application/pdf"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "documents[0]",
    )


async def test_bad_page_token(stub):
    await expect(
        stub.ListCollections(pb.ListCollectionsRequest(page={"page_token": "%%%"})),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page.page_token",
    )
