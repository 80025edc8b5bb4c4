"""``/openapi.json`` documents the body of every vector-store and file answer (issue 12), and their
models carry every field of the official openai client's types, optional where the client's are."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import openai.types as oai
import pytest
from openai.types import vector_stores as oai_vector_stores
from pydantic import BaseModel

from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune_gateway.repositories.files import FileRecord
from ragtune_gateway.schemas import files, vector_stores
from ragtune_gateway.services import files as file_service
from ragtune_gateway.services import vector_stores as store_service
from tests.fixtures.openapi import gateway_openapi, resolve

PREFIXES = ("/v1/vector_stores", "/v1/files")
DOWNLOAD = ("/v1/files/{file_id}/content", "get")  # bytes, not JSON

# (ours, the openai client's)
MIRRORS: list[tuple[type[BaseModel], type[BaseModel]]] = [
    (vector_stores.VectorStore, oai.VectorStore),
    (vector_stores.FileCounts, oai.vector_store.FileCounts),
    (vector_stores.VectorStoreFile, oai_vector_stores.VectorStoreFile),
    (vector_stores.VectorStoreDeleted, oai.VectorStoreDeleted),
    (vector_stores.VectorStoreFileDeleted, oai_vector_stores.VectorStoreFileDeleted),
    (vector_stores.VectorStoreFileBatch, oai_vector_stores.VectorStoreFileBatch),
    (vector_stores.SearchResult, oai.VectorStoreSearchResponse),
    (vector_stores.StaticChunkingStrategy, oai.StaticFileChunkingStrategyObject),
    (files.FileObject, oai.FileObject),
    (files.FileDeleted, oai.FileDeleted),
]
# Where ragtune answers null and the client's type says a value is always there.
NULLABLE_HERE = {(vector_stores.VectorStore, "name")}  # a store created without a name


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return gateway_openapi(tmp_path_factory.mktemp("state"))


def test_every_vector_store_and_file_answer_has_a_documented_body(spec: dict[str, Any]) -> None:
    operations = [
        (path, method, operation)
        for path, item in spec["paths"].items()
        if path.startswith(PREFIXES)
        for method, operation in item.items()
    ]
    assert len(operations) == 9 + 4 + 5  # vector stores 9 routes, file batches 4, files 5
    for path, method, operation in operations:
        content = operation["responses"]["200"]["content"]
        if (path, method) == DOWNLOAD:
            assert content == {"application/octet-stream": {}}
            continue
        schema = resolve(spec, content["application/json"]["schema"])
        assert schema.get("properties"), f"{method.upper()} {path} documents no response body"


def test_pages_document_their_items(spec: dict[str, Any]) -> None:
    ok = spec["paths"]["/v1/vector_stores/{store_id}/search"]["post"]["responses"]["200"]
    page = resolve(spec, ok["content"]["application/json"]["schema"])
    result = resolve(spec, page["properties"]["data"]["items"])
    assert {"file_id", "filename", "score", "content", "start_offset", "end_offset"} <= set(result["properties"])
    ok = spec["paths"]["/v1/vector_stores/{store_id}/files"]["get"]["responses"]["200"]
    listed = resolve(spec, resolve(spec, ok["content"]["application/json"]["schema"])["properties"]["data"]["items"])
    assert {"id", "vector_store_id", "status", "chunk_count"} <= set(listed["properties"])


@pytest.mark.parametrize(("ours", "theirs"), MIRRORS, ids=lambda m: m.__name__)
def test_models_mirror_the_openai_types(ours: type[BaseModel], theirs: type[BaseModel]) -> None:
    missing = set(theirs.model_fields) - set(ours.model_fields)
    assert not missing, f"{ours.__name__} lacks {missing} of openai's {theirs.__name__}"
    for name, field in theirs.model_fields.items():
        if not field.is_required() or (ours, name) in NULLABLE_HERE:
            assert not ours.model_fields[name].is_required(), f"{ours.__name__}.{name} must be optional"


def test_built_answers_validate_as_the_openai_types() -> None:
    """A store, a store file, a search result and a file, built the way the services build them,
    are valid instances of the client's types (strict validation, not the client's lenient parse)."""
    collection = rpb.Collection(name="vs_1", document_count=2, chunk_count=5, embedding_model="m")
    collection.metadata.update({"name": "handbook", "metadata": {"team": "hr"}})
    collection.chunking.max_tokens, collection.chunking.overlap_tokens = 256, 32
    store = oai.VectorStore.model_validate(store_service.store_object(collection).model_dump())
    assert store.file_counts.completed == 2 and store.metadata == {"team": "hr"}
    extra = store.model_extra or {}  # ragtune's fields ride along as the client's extras
    assert extra["chunk_count"] == 5 and extra["embedding_model"] == "m"
    assert extra["chunking_strategy"]["static"] == {"max_chunk_size_tokens": 256, "chunk_overlap_tokens": 32}

    document = rpb.Document(id="file-1", source_name="a.txt", chunk_count=3, char_count=40)
    document.metadata.update({"year": 2021, "lang": "en", "draft": False})
    store_file = store_service.store_file_object("vs_1", document)
    parsed = oai_vector_stores.VectorStoreFile.model_validate(store_file.model_dump())
    assert parsed.attributes == {"year": 2021.0, "lang": "en", "draft": False} and parsed.usage_bytes == 40

    hit = rpb.SearchHit(chunk_id="file-1#0", document_id="file-1", collection="vs_1", text="t", score=0.5)
    hit.end_offset = 1
    result = oai.VectorStoreSearchResponse.model_validate(store_service.search_result(hit).model_dump())
    assert result.content[0].text == "t" and result.filename == "file-1"  # no source name: the id

    record = FileRecord("file-2", "tn_1", "a.txt", "assistants", 7, "text/plain", datetime.now(UTC))
    file = oai.FileObject.model_validate(file_service.file_object(record).model_dump())
    assert file.status == "processed" and file.bytes == 7
