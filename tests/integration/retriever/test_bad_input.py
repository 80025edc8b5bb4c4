"""Bad input gets a clear status naming the field, nothing is half-written, the server keeps serving."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune.retriever.v1 import retriever_pb2_grpc
from ragtune_common.errors import field_violations
from ragtune_retriever.embedding import resolve_model_path
from ragtune_retriever.main import SERVICE_NAME
from ragtune_retriever.validation import METADATA_MAX_BYTES, METADATA_MAX_DEPTH, METADATA_MAX_KEYS
from tests.fixtures.retriever import serve_retriever
from tests.fixtures.security import direct_channel
from tests.integration.retriever.helpers import doc, inflating_pdf, minimal_pdf, search, upsert


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


async def test_field_errors_carry_a_bad_request_detail(stub, collection):
    """The field a client must fix travels as a google.rpc.BadRequest status detail, so no client
    parses the message for it (the gateway maps it to the OpenAI ``param``)."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Search(pb.SearchRequest(collections=[collection], query="x", top_k=1001))
    violations = field_violations(err.value.trailing_metadata())
    assert [field for field, _ in violations] == ["top_k"]
    assert violations[0][1] and violations[0][1] in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:  # an error without a field has no detail
        await stub.Search(search("no-such-collection", "x"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


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


# -- NUL characters: PostgreSQL text cannot hold them --------------------------------------------


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (pb.DocumentInput(id="a\x00b", text="x"), "documents[1].id"),
        (pb.DocumentInput(id="s", text="x", source_name="f\x00.txt"), "documents[1].source_name"),
        (pb.DocumentInput(id="m", text="x", mime_type="text/plain\x00"), "documents[1].mime_type"),
        (pb.DocumentInput(id="k", text="x", metadata={"a\x00": 1}), "documents[1].metadata.a\\x00"),
        (pb.DocumentInput(id="v", text="x", metadata={"a": {"b": ["ok", "\x00"]}}), "documents[1].metadata.a.b[1]"),
    ],
)
async def test_nul_in_document_fields_is_invalid_argument(stub, collection, bad, field):
    good = doc("good", "A perfectly fine document about rivers.")
    await expect(stub.UpsertDocuments(upsert(collection, good, bad)), grpc.StatusCode.INVALID_ARGUMENT, field, "NUL")
    assert await document_ids(stub, collection) == []


async def test_nul_in_document_text_is_stripped(stub, collection):
    await stub.UpsertDocuments(upsert(collection, doc("t", "Null\x00 bytes\x00 vanish from text.")))
    stored = (await stub.GetDocument(pb.GetDocumentRequest(collection=collection, id="t"))).document
    assert stored.text == "Null bytes vanish from text."
    html = pb.DocumentInput(id="h", data=b"<p>In\x00 HTML</p>", mime_type="text/html")
    await stub.UpsertDocuments(upsert(collection, html))
    stored = (await stub.GetDocument(pb.GetDocumentRequest(collection=collection, id="h"))).document
    assert stored.text == "In HTML"


async def test_nul_in_ids_queries_and_names_is_invalid_argument(stub, collection, unique_name):
    await expect(
        stub.GetDocument(pb.GetDocumentRequest(collection=collection, id="a\x00")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "id",
    )
    await expect(
        stub.DeleteDocuments(pb.DeleteDocumentsRequest(collection=collection, ids=["ok", "b\x00"])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ids[1]",
    )
    await expect(stub.Search(search(collection, "lakes\x00")), grpc.StatusCode.INVALID_ARGUMENT, "query")
    await expect(
        stub.ListDocuments(pb.ListDocumentsRequest(collection=collection, page={"page_token": "YQA="})),  # "a\x00"
        grpc.StatusCode.INVALID_ARGUMENT,
        "page.page_token",
    )
    for bad in (
        pb.CreateCollectionRequest(name=unique_name(), metadata={"k": "v\x00"}),
        pb.CreateCollectionRequest(name=unique_name(), embedding_model="all-MiniLM-L6-v2\x00"),
        pb.CreateCollectionRequest(name="a\x00b"),
        pb.CreateCollectionRequest(tenant="t\x00", name=unique_name()),
    ):
        await expect(stub.CreateCollection(bad), grpc.StatusCode.INVALID_ARGUMENT)
    await expect(stub.GetCollection(pb.GetCollectionRequest(name="a\x00")), grpc.StatusCode.INVALID_ARGUMENT, "name")


# -- metadata bounds ------------------------------------------------------------------------------


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


@pytest.mark.parametrize(
    ("metadata", "fragments"),
    [
        (nested(METADATA_MAX_DEPTH + 1), ["documents[0].metadata" + ".n" * METADATA_MAX_DEPTH, "deeper"]),
        ({f"k{i}": i for i in range(METADATA_MAX_KEYS + 1)}, ["documents[0].metadata", "keys"]),
        ({"big": "x" * METADATA_MAX_BYTES}, ["documents[0].metadata", "bytes"]),
        ({"k" * 300: 1}, ["documents[0].metadata", "longer than"]),
    ],
)
async def test_metadata_is_bounded(stub, collection, unique_name, metadata, fragments):
    bad = pb.DocumentInput(id="m", text="x", metadata=metadata)
    await expect(stub.UpsertDocuments(upsert(collection, bad)), grpc.StatusCode.INVALID_ARGUMENT, *fragments)
    assert await document_ids(stub, collection) == []
    await expect(
        stub.CreateCollection(pb.CreateCollectionRequest(name=unique_name(), metadata=metadata)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "metadata",
    )


async def test_metadata_at_the_bounds_is_stored(stub, collection):
    ok = pb.DocumentInput(id="m", text="x", metadata={**nested(METADATA_MAX_DEPTH), "list": [1, "two", None]})
    assert (await stub.UpsertDocuments(upsert(collection, ok))).created == 1


# -- embedding models: only the configured list --------------------------------------------------


@pytest.fixture(scope="module")
def listed_model_dir(tmp_path_factory) -> Path:
    """A real sentence-transformers directory (a copy of the shipped model) the strict server lists."""
    target = tmp_path_factory.mktemp("models") / "minilm-copy"
    shutil.copytree(resolve_model_path("all-MiniLM-L6-v2"), target)
    return target


@pytest_asyncio.fixture(scope="module")
async def strict_stub(retriever_settings, listed_model_dir) -> AsyncIterator[retriever_pb2_grpc.RetrieverServiceStub]:
    """A second retriever with tight extraction limits and a listed local model."""
    settings = retriever_settings.model_copy(
        update={
            "embedding_models": [str(listed_model_dir)],
            "extraction_timeout_s": 3.0,
            "max_extracted_chars": 100_000,
            "extraction_workers": 1,
        }
    )
    async with serve_retriever(settings) as bound, direct_channel(bound.port, SERVICE_NAME) as channel:
        yield retriever_pb2_grpc.RetrieverServiceStub(channel)


async def test_unlisted_local_model_directory_is_refused(stub, unique_name, listed_model_dir):
    """The session server does not list the directory: it must not load it (it used to)."""
    details = await expect(
        stub.CreateCollection(pb.CreateCollectionRequest(name=unique_name(), embedding_model=str(listed_model_dir))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "embedding_model",
        "RAGTUNE_RETRIEVER_EMBEDDING_MODELS",
    )
    assert "all-MiniLM-L6-v2" in details


async def test_listed_local_model_directory_is_accepted(strict_stub, unique_name, listed_model_dir):
    name = unique_name()
    created = await strict_stub.CreateCollection(
        pb.CreateCollectionRequest(name=name, embedding_model=str(listed_model_dir))
    )
    assert created.collection.dimension == 384
    shipped = await strict_stub.CreateCollection(pb.CreateCollectionRequest(name=unique_name()))
    assert shipped.collection.embedding_model.split("@")[0] == "all-MiniLM-L6-v2"  # plus the default backend
    await expect(
        strict_stub.CreateCollection(pb.CreateCollectionRequest(name=unique_name(), embedding_model="/etc")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "embedding_model",
    )
    await strict_stub.DeleteCollection(pb.DeleteCollectionRequest(name=name))


# -- extraction bounded in output and time ---------------------------------------------------------


@pytest.mark.timeout(120)
async def test_inflating_pdf_and_slow_pdf_are_refused(strict_stub, unique_name):
    """A 32 KB PDF that would extract to 17 MB of text, and one that keeps the parser busy for
    minutes: each is refused naming the document, and the server answers the next call at once."""
    name = unique_name()
    await strict_stub.CreateCollection(pb.CreateCollectionRequest(name=name))
    bomb = pb.DocumentInput(id="bomb", data=inflating_pdf(pages=200, lines=2000), mime_type="application/pdf")
    await expect(
        strict_stub.UpsertDocuments(upsert(name, doc("ok", "fine"), bomb)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "documents[1].data",
        "more than 100000 characters",
    )
    slow = pb.DocumentInput(id="slow", data=inflating_pdf(pages=1, lines=400_000), mime_type="application/pdf")
    started = time.monotonic()
    call = strict_stub.UpsertDocuments(upsert(name, slow))
    listed = await strict_stub.ListCollections(pb.ListCollectionsRequest(), timeout=2)  # served meanwhile
    assert name in [c.name for c in listed.collections]
    await expect(call, grpc.StatusCode.INVALID_ARGUMENT, "documents[0].data", "longer than 3 s")
    assert time.monotonic() - started < 15
    assert await document_ids(strict_stub, name) == []
    ok = pb.DocumentInput(id="ok", data=minimal_pdf("Still works"), mime_type="application/pdf")
    assert (await strict_stub.UpsertDocuments(upsert(name, ok))).created == 1
    await strict_stub.DeleteCollection(pb.DeleteCollectionRequest(name=name))


@pytest.mark.timeout(120)
async def test_huge_html_is_refused(strict_stub, unique_name):
    name = unique_name()
    await strict_stub.CreateCollection(pb.CreateCollectionRequest(name=name))
    huge = pb.DocumentInput(id="h", data=b"<div><p>word</p></div>" * 90_000, mime_type="text/html")  # 2 MB
    details = await expect(strict_stub.UpsertDocuments(upsert(name, huge)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "documents[0].data" in details and ("longer than" in details or "more than" in details)
    await strict_stub.DeleteCollection(pb.DeleteCollectionRequest(name=name))


async def test_structs_nested_past_protobufs_limit_are_invalid_argument(stub, collection):
    """Past ~32 levels of JSON a Struct no longer decodes (protobuf's 100-level limit): that is the
    client's mistake, INVALID_ARGUMENT, not grpc's UNKNOWN."""
    spec: dict = {"a": 1}
    for _ in range(40):
        spec = {"$and": [spec]}
    await expect(stub.Search(search(collection, "x", filter=spec)), grpc.StatusCode.INVALID_ARGUMENT, "request")
    request = pb.UpsertDocumentsRequest(collection=collection)
    deep = request.documents.add(id="deep", text="x")  # built in place: a copy would re-parse it
    deep.metadata.update(nested(40))
    await expect(stub.UpsertDocuments(request), grpc.StatusCode.INVALID_ARGUMENT, "request")
    assert await document_ids(stub, collection) == []
