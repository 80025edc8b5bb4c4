"""The retriever's Embed RPC over a real gRPC channel with the real model: the vectors are the ones
ingestion stores (cosine 1.0 with a stored chunk of the same text), the tokens are counted with the
model's tokenizer, and bad input is refused naming the field."""

from __future__ import annotations

import grpc
import numpy as np
import psycopg
import pytest

from ragtune.retriever.v1 import retriever_pb2 as pb
from ragtune_common.errors import field_violations
from tests.integration.retriever.helpers import doc, upsert

TEXT = "Employees get 27 days of paid leave per calendar year; unused days expire in March."


async def stored_vector(database_url: str, collection: str, document_id: str) -> np.ndarray:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT ch.embedding::text FROM retriever.chunks ch JOIN retriever.collections c ON c.id = ch.collection_id"
            " WHERE c.name = %s AND ch.document_id = %s ORDER BY ch.seq",
            (collection, document_id),
        )
        rows = await cursor.fetchall()
    assert len(rows) == 1, rows
    return np.array([float(x) for x in rows[0][0].strip("[]").split(",")], dtype=np.float32)


async def test_embed_matches_the_stored_chunk_vector(stub, collection, database_url):
    await stub.UpsertDocuments(upsert(collection, doc("leave", TEXT)))
    stored = await stored_vector(database_url, collection, "leave")
    model = (await stub.GetCollection(pb.GetCollectionRequest(name=collection))).collection.embedding_model

    reply = await stub.Embed(pb.EmbedRequest(model=model, inputs=[TEXT]))
    vector = np.array(reply.embeddings[0].values, dtype=np.float32)
    assert reply.model == model and reply.dimensions == len(vector) == len(stored) == 384
    assert float(vector @ stored) == pytest.approx(1.0, abs=1e-5)
    # search ranks the same text first, by the same similarity
    hits = (await stub.Search(pb.SearchRequest(collections=[collection], query=TEXT, mode=pb.SEARCH_MODE_VECTOR))).hits
    assert hits[0].document_id == "leave" and hits[0].score == pytest.approx(1.0, abs=1e-3)


async def test_embed_a_batch_under_the_default_model(stub):
    texts = ["cats purr when content", "a volcano spills lava", "cats purr when content", "x"]
    reply = await stub.Embed(pb.EmbedRequest(inputs=texts))
    assert reply.model.startswith("all-MiniLM-L6-v2@") and reply.dimensions == 384
    vectors = np.array([list(e.values) for e in reply.embeddings], dtype=np.float32)
    assert vectors.shape == (4, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[2]) == pytest.approx(1.0, abs=1e-4)  # order kept, same text, same vector
    assert float(vectors[0] @ vectors[1]) < 0.5
    # [CLS] + wordpieces + [SEP], counted with the model's tokenizer: "x" is 3 tokens
    from transformers import AutoTokenizer

    from ragtune_retriever.embedding import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path("all-MiniLM-L6-v2")))
    assert reply.prompt_tokens == sum(len(tokenizer(t)["input_ids"]) for t in texts)


async def test_long_input_is_truncated_and_counted_at_the_sequence_length(stub):
    reply = await stub.Embed(pb.EmbedRequest(model="all-MiniLM-L6-v2@torch", inputs=["word " * 2000]))
    assert reply.model == "all-MiniLM-L6-v2@torch" and reply.prompt_tokens == 256


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (pb.EmbedRequest(inputs=[]), grpc.StatusCode.INVALID_ARGUMENT, "inputs"),
        (pb.EmbedRequest(inputs=["ok", ""]), grpc.StatusCode.INVALID_ARGUMENT, "inputs[1]"),
        (pb.EmbedRequest(inputs=["ok", "ok", "a\x00b"]), grpc.StatusCode.INVALID_ARGUMENT, "inputs[2]"),
        (pb.EmbedRequest(inputs=["ok", "y" * 40000]), grpc.StatusCode.INVALID_ARGUMENT, "inputs[1]"),
        (pb.EmbedRequest(inputs=["ok"] * 2049), grpc.StatusCode.INVALID_ARGUMENT, "inputs"),
        (pb.EmbedRequest(model="text-embedding-3-small", inputs=["ok"]), grpc.StatusCode.NOT_FOUND, "model"),
        (pb.EmbedRequest(model="all-MiniLM-L6-v2@fp4", inputs=["ok"]), grpc.StatusCode.NOT_FOUND, "model"),
        (pb.EmbedRequest(model="/etc", inputs=["ok"]), grpc.StatusCode.NOT_FOUND, "model"),
    ],
)
async def test_bad_input_names_the_field(stub, request_, code, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Embed(request_)
    assert caught.value.code() == code
    assert field_violations(caught.value.trailing_metadata())[0][0] == field


async def test_lists_the_embedding_models_it_accepts(stub):
    listed = (await stub.ListEmbeddingModels(pb.ListEmbeddingModelsRequest())).models
    assert listed[0].name == "all-MiniLM-L6-v2" and listed[0].is_default
    assert listed[0].default_variant.startswith("all-MiniLM-L6-v2@")
    # each listed name is one Embed takes, and it runs as the listed variant
    reply = await stub.Embed(pb.EmbedRequest(model=listed[0].name, inputs=["hello"]))
    assert reply.model == listed[0].default_variant
