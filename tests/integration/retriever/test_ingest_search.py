"""Ingest -> search round trips over a real gRPC channel, real PostgreSQL and the real model."""

from __future__ import annotations

import grpc
import pytest

from ragtune.common.v1 import common_pb2
from ragtune.retriever.v1 import retriever_pb2 as pb
from tests.integration.retriever.helpers import doc, minimal_pdf, search, upsert

CORPUS = {
    "cats": "Cats are small domesticated felines. A cat purrs when it is content and sleeps most of the day.",
    "volcano": "A volcano erupts when magma from the mantle rises through the crust and spills out as lava.",
    "bread": "To bake bread, knead flour, water, yeast and salt, let the dough rise, then bake it in a hot oven.",
    "qubits": "Quantum computers store information in qubits, which can hold superpositions of zero and one.",
}


async def ingest_corpus(stub, collection: str) -> pb.UpsertDocumentsResponse:
    docs = [doc(i, text, topic=i, year=2000 + n) for n, (i, text) in enumerate(CORPUS.items())]
    return await stub.UpsertDocuments(upsert(collection, *docs))


@pytest.mark.parametrize(
    ("mode", "query", "expected"),
    [
        (pb.SEARCH_MODE_VECTOR, "How does a kitten show it is happy?", "cats"),
        (pb.SEARCH_MODE_KEYWORD, "magma lava!!! (crust)", "volcano"),
        (pb.SEARCH_MODE_HYBRID, "how to bake bread with yeast", "bread"),
        (pb.SEARCH_MODE_UNSPECIFIED, "superposition qubits", "qubits"),
    ],
)
async def test_round_trip_each_mode(stub, collection, mode, query, expected):
    response = await ingest_corpus(stub, collection)
    assert response.created == 4 and response.chunk_count >= 4
    hits = (await stub.Search(search(collection, query, mode))).hits
    assert hits, "no hits"
    assert hits[0].document_id == expected
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    if mode == pb.SEARCH_MODE_KEYWORD:
        assert all(h.keyword_rank > 0 and h.vector_rank == 0 for h in hits)
    if mode == pb.SEARCH_MODE_VECTOR:
        assert len(hits) == 4 and all(h.vector_rank > 0 and h.keyword_rank == 0 for h in hits)


async def test_offsets_point_at_the_source_text(stub, collection):
    paragraphs = [f"Paragraph {n} talks about topic number {n} and nothing else at all." for n in range(40)]
    text = "\n\n".join(paragraphs)
    await stub.UpsertDocuments(upsert(collection, doc("long", text)))
    document = (await stub.GetDocument(pb.GetDocumentRequest(collection=collection, id="long"))).document
    assert document.chunk_count > 1 and document.text == text
    hits = (await stub.Search(search(collection, "topic number 17", top_k=50))).hits
    assert len(hits) == document.chunk_count
    for hit in hits:
        assert document.text[hit.start_offset : hit.end_offset] == hit.text
    assert "Paragraph 17 " in hits[0].text


async def test_reingest_unchanged_does_nothing(stub, collection):
    first = await ingest_corpus(stub, collection)
    before = (await stub.GetDocument(pb.GetDocumentRequest(collection=collection, id="cats"))).document
    second = await ingest_corpus(stub, collection)
    assert second.unchanged == 4 and second.created == second.updated == 0
    assert [r.status for r in second.results] == [pb.UPSERT_STATUS_UNCHANGED] * 4
    assert [r.chunk_count for r in second.results] == [r.chunk_count for r in first.results]
    after = (await stub.GetDocument(pb.GetDocumentRequest(collection=collection, id="cats"))).document
    assert after.updated_at == before.updated_at


async def test_content_hash_id_makes_anonymous_documents_idempotent(stub, collection):
    first = await stub.UpsertDocuments(upsert(collection, pb.DocumentInput(text="An anonymous note about owls.")))
    second = await stub.UpsertDocuments(upsert(collection, pb.DocumentInput(text="An anonymous note about owls.")))
    assert first.results[0].document_id == second.results[0].document_id
    assert second.results[0].status == pb.UPSERT_STATUS_UNCHANGED


async def test_changed_content_replaces_chunks(stub, collection):
    await ingest_corpus(stub, collection)
    new_text = "Owls hunt at night. " * 60
    response = await stub.UpsertDocuments(upsert(collection, doc("cats", new_text, topic="owls")))
    assert response.results[0].status == pb.UPSERT_STATUS_UPDATED
    assert response.results[0].chunk_count > 1
    hits = (await stub.Search(search(collection, "felines purr", pb.SEARCH_MODE_KEYWORD))).hits
    assert not [h for h in hits if h.document_id == "cats"], "old chunks survived the update"
    owl_hits = (await stub.Search(search(collection, "owls hunt", top_k=100, filter={"topic": "owls"}))).hits
    assert {h.chunk_id for h in owl_hits} == {f"cats#{n}" for n in range(response.results[0].chunk_count)}


async def test_metadata_only_change_updates_without_rechunking(stub, collection):
    await ingest_corpus(stub, collection)
    response = await stub.UpsertDocuments(upsert(collection, doc("bread", CORPUS["bread"], topic="baking")))
    assert response.results[0].status == pb.UPSERT_STATUS_UPDATED
    hits = (await stub.Search(search(collection, "bread", filter={"topic": "baking"}))).hits
    assert [h.document_id for h in hits] == ["bread"]
    assert hits[0].metadata["topic"] == "baking"


async def test_delete_documents(stub, collection):
    await ingest_corpus(stub, collection)
    response = await stub.DeleteDocuments(pb.DeleteDocumentsRequest(collection=collection, ids=["cats", "nope"]))
    assert list(response.deleted_ids) == ["cats"] and list(response.missing_ids) == ["nope"]
    hits = (await stub.Search(search(collection, "cat purrs", top_k=10))).hits
    assert "cats" not in {h.document_id for h in hits}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetDocument(pb.GetDocumentRequest(collection=collection, id="cats"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_stream_upsert_in_batches(stub, collection):
    async def requests():
        for batch in range(5):
            docs = [doc(f"d{batch}-{i}", f"Document {batch}-{i} describes item {batch * 3 + i}.") for i in range(3)]
            yield pb.UpsertDocumentsRequest(collection=collection if batch == 0 else "", documents=docs)

    response = await stub.StreamUpsertDocuments(requests())
    assert response.created == 15 and len(response.results) == 15
    listed = await stub.ListDocuments(pb.ListDocumentsRequest(collection=collection, page={"page_size": 100}))
    assert len(listed.documents) == 15


async def test_stream_rejects_duplicate_ids(stub, collection):
    async def requests():
        yield upsert(collection, doc("same", "first text"))
        yield upsert(collection, doc("other", "second text"), doc("same", "third text"))

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.StreamUpsertDocuments(requests())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "documents[2].id" in err.value.details()


async def test_html_markdown_and_pdf_are_parsed(stub, collection):
    html = b"<html><head><style>p{}</style></head><body><h1>Tides</h1><p>The moon pulls the ocean.</p></body></html>"
    markdown = "# Glaciers\n\nA **glacier** is a slow [river](http://x) of ice."
    documents = [
        pb.DocumentInput(id="h", data=html, mime_type="text/html"),
        pb.DocumentInput(id="m", text=markdown, source_name="glaciers.md"),
        pb.DocumentInput(id="p", data=minimal_pdf("Photosynthesis turns light into sugar"), source_name="leaf.pdf"),
    ]
    await stub.UpsertDocuments(upsert(collection, *documents))
    texts = {}
    for doc_id in ("h", "m", "p"):
        texts[doc_id] = (await stub.GetDocument(pb.GetDocumentRequest(collection=collection, id=doc_id))).document
    assert "moon pulls the ocean" in texts["h"].text and "{" not in texts["h"].text
    assert texts["m"].mime_type == "text/markdown" and "**" not in texts["m"].text and "glacier" in texts["m"].text
    assert texts["p"].mime_type == "application/pdf" and "Photosynthesis" in texts["p"].text
    hits = (await stub.Search(search(collection, "light into sugar", top_k=1))).hits
    assert hits[0].document_id == "p" and hits[0].source_name == "leaf.pdf"


async def test_collections_crud_and_paging(stub, unique_name):
    names = sorted(unique_name("page") for _ in range(3))
    tenant = unique_name("tenant")
    for name in names:
        created = await stub.CreateCollection(
            pb.CreateCollectionRequest(tenant=tenant, name=name, chunking={"max_tokens": 128, "overlap_tokens": 16})
        )
        assert created.collection.dimension == 384 and created.collection.chunking.max_tokens == 128
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateCollection(pb.CreateCollectionRequest(tenant=tenant, name=names[0]))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    seen, token = [], ""
    while True:
        page = await stub.ListCollections(
            pb.ListCollectionsRequest(tenant=tenant, page=common_pb2.PageRequest(page_size=2, page_token=token))
        )
        seen += [c.name for c in page.collections]
        token = page.next_page_token
        if not token:
            break
    assert seen == names
    other = await stub.ListCollections(pb.ListCollectionsRequest(tenant=unique_name("tenant")))
    assert not other.collections, "collections leaked across tenants"
    for name in names:
        await stub.DeleteCollection(pb.DeleteCollectionRequest(tenant=tenant, name=name))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCollection(pb.GetCollectionRequest(tenant=tenant, name=names[0]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_collection_counts_and_multi_collection_search(stub, collection, unique_name):
    await ingest_corpus(stub, collection)
    info = (await stub.GetCollection(pb.GetCollectionRequest(name=collection))).collection
    assert info.document_count == 4 and info.chunk_count >= 4
    second = unique_name("second")
    await stub.CreateCollection(pb.CreateCollectionRequest(name=second))
    try:
        await stub.UpsertDocuments(upsert(second, doc("kiln", "A kiln fires clay pottery at high heat.")))
        request = pb.SearchRequest(collections=[collection, second], query="firing clay pottery", top_k=3)
        hits = (await stub.Search(request)).hits
        assert hits[0].document_id == "kiln" and hits[0].collection == second
        assert {h.collection for h in hits} == {collection, second}
    finally:
        await stub.DeleteCollection(pb.DeleteCollectionRequest(name=second))


async def test_bm25_statistics_stay_exact(stub, collection, database_url):
    """The trigger-maintained document frequencies equal a recount after creates, updates and deletes."""
    import psycopg

    await ingest_corpus(stub, collection)
    await stub.UpsertDocuments(upsert(collection, doc("cats", "Owls and cats hunt mice at night in barns.")))
    await stub.DeleteDocuments(pb.DeleteDocumentsRequest(collection=collection, ids=["volcano"]))
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT s.lexeme, s.df FROM retriever.lexeme_stats s JOIN retriever.collections c"
            " ON c.id = s.collection_id WHERE c.name = %s AND s.df <> 0 ORDER BY 1",
            (collection,),
        )
        kept = await cur.fetchall()
        cur = await conn.execute(
            "SELECT u.lexeme, count(*) FROM retriever.chunks ch JOIN retriever.collections c"
            " ON c.id = ch.collection_id, unnest(ch.tsv) u WHERE c.name = %s GROUP BY 1 ORDER BY 1",
            (collection,),
        )
        recounted = await cur.fetchall()
    assert kept == recounted and ("magma", 1) not in kept and ("owl", 1) in kept
    hits = (await stub.Search(search(collection, "owls hunting mice", pb.SEARCH_MODE_KEYWORD))).hits
    assert hits[0].document_id == "cats" and hits[0].score > 0


async def test_embedding_latency_is_measured(stub, collection):
    """Prometheus (default registry): embedding calls timed by use."""
    from prometheus_client import REGISTRY

    def count(use: str) -> float:
        return REGISTRY.get_sample_value("ragtune_retriever_embedding_batch_seconds_count", {"use": use}) or 0

    ingest, query = count("ingest"), count("query")
    await stub.UpsertDocuments(upsert(collection, doc("m", "Metrics measure the embedding of this text.")))
    await stub.Search(search(collection, "a query never asked before: which metrics measure embeddings?"))
    assert count("ingest") == ingest + 1
    assert count("query") == query + 1
