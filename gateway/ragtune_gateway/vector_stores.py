"""Vector stores as retriever collections of the tenant: object shapes, ingestion of gateway
files (document id = file id, source name = filename), and OpenAI-style search filters."""

from __future__ import annotations

from typing import Any

from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune_common.protoconv import dict_to_struct, struct_to_dict
from ragtune_gateway import files, store
from ragtune_gateway.auth import metadata
from ragtune_gateway.errors import ApiError, not_found, rpc_errors
from ragtune_gateway.rag import VECTOR_STORE_PREFIX
from ragtune_gateway.runtime import GatewayRuntime

RETRIEVER_MIME = {"text/plain", "text/markdown", "text/html", "application/pdf"}
COMPARISONS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"}


def missing_store(store_id: str) -> ApiError:
    return not_found("vector store", store_id)


def store_object(c: rpb.Collection) -> dict[str, Any]:
    meta = struct_to_dict(c.metadata, "metadata") if c.HasField("metadata") else {}
    created = c.created_at.seconds if c.HasField("created_at") else 0
    return {
        "id": c.name,
        "object": "vector_store",
        "created_at": created,
        "name": meta.get("name"),
        "metadata": meta.get("metadata") or {},
        "usage_bytes": 0,
        "file_counts": {
            "in_progress": 0,
            "completed": c.document_count,
            "failed": 0,
            "cancelled": 0,
            "total": c.document_count,
        },
        "status": "completed",
        "expires_after": None,
        "expires_at": None,
        "last_active_at": created,
        "chunk_count": c.chunk_count,
        "embedding_model": c.embedding_model,
        "chunking_strategy": chunking_object(c.chunking),
    }


def chunking_object(chunking: rpb.ChunkingConfig) -> dict[str, Any]:
    return {
        "type": "static",
        "static": {"max_chunk_size_tokens": chunking.max_tokens, "chunk_overlap_tokens": chunking.overlap_tokens},
    }


def store_file_object(store_id: str, doc: rpb.Document, attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": doc.id,
        "object": "vector_store.file",
        "created_at": doc.created_at.seconds if doc.HasField("created_at") else 0,
        "vector_store_id": store_id,
        "status": "completed",
        "usage_bytes": doc.char_count,
        "last_error": None,
        "attributes": attributes if attributes is not None else struct_to_dict(doc.metadata, "metadata"),
        "chunk_count": doc.chunk_count,
        "filename": doc.source_name or None,
    }


async def count_stores(runtime: GatewayRuntime, tenant: str) -> int:
    """The tenant's vector stores (retriever collections named as stores), every page read."""
    count, token = 0, ""
    while True:
        request = rpb.ListCollectionsRequest(tenant=tenant)
        request.page.page_size, request.page.page_token = 1000, token
        with rpc_errors("retriever"):
            response = await runtime.downstream.retriever.ListCollections(
                request, timeout=runtime.settings.rpc_timeout_s, metadata=metadata()
            )
        count += sum(1 for c in response.collections if c.name.startswith(VECTOR_STORE_PREFIX))
        token = response.next_page_token
        if not token:
            return count


async def get_store(runtime: GatewayRuntime, tenant: str, store_id: str) -> rpb.Collection:
    with rpc_errors("retriever", missing=missing_store(store_id)):
        response = await runtime.downstream.retriever.GetCollection(
            rpb.GetCollectionRequest(tenant=tenant, name=store_id),
            timeout=runtime.settings.rpc_timeout_s,
            metadata=metadata(),
        )
    return response.collection


async def documents_for(
    runtime: GatewayRuntime, tenant: str, file_ids: list[str], attributes: dict[str, Any] | None, param: str
) -> list[rpb.DocumentInput]:
    """The tenant's document files as retriever inputs; every id is checked, and their total size
    against ``max_request_file_bytes`` (one retriever message carries them all), before any is read."""
    records = []
    total, limit = 0, runtime.settings.max_request_file_bytes
    for i, file_id in enumerate(file_ids):
        record = await store.get_file(runtime.pool, tenant, file_id)
        where = f"{param}[{i}]" if param.endswith("ids") else param
        if record is None:
            raise not_found("file", file_id, where)
        if record.purpose == "fine-tune":
            raise ApiError(400, f"File '{file_id}' is a fine-tune file, not a document.", param=where)
        total += record.bytes
        if total > limit:
            message = f"The files come to more than {limit} bytes; add them in several requests."
            raise ApiError(413, message, param=where, code="request_too_large")
        records.append(record)
    inputs = []
    for record in records:
        doc = rpb.DocumentInput(
            id=record.id,
            data=await files.read_bytes(runtime, record),
            mime_type=record.mime_type if record.mime_type in RETRIEVER_MIME else "",
            source_name=record.filename,
        )
        if attributes:
            doc.metadata.CopyFrom(dict_to_struct(attributes))
        inputs.append(doc)
    return inputs


async def upsert(
    runtime: GatewayRuntime, tenant: str, store_id: str, documents: list[rpb.DocumentInput], param: str
) -> rpb.UpsertDocumentsResponse:
    """One transaction in the retriever: all documents are stored, or none."""
    request = rpb.UpsertDocumentsRequest(tenant=tenant, collection=store_id, documents=documents)
    with rpc_errors(
        "retriever", params={"documents": param, "collection": "vector_store_id"}, missing=missing_store(store_id)
    ):
        return await runtime.downstream.retriever.UpsertDocuments(
            request, timeout=runtime.settings.ingest_timeout_s, metadata=metadata()
        )


def search_filter(value: dict[str, Any], path: str = "filters") -> dict[str, Any]:
    """OpenAI filters (``{"type": "eq", "key", "value"}``, ``{"type": "and", "filters": [...]}``)
    in the retriever's operator syntax; a filter without ``type`` is taken as that syntax already."""
    if "type" not in value:
        return value
    kind = value["type"]
    if kind in ("and", "or"):
        parts = value.get("filters")
        if not isinstance(parts, list) or not parts:
            raise ApiError(400, "must be a non-empty list of filters", param=f"{path}.filters")
        return {f"${kind}": [search_filter(p, f"{path}.filters[{i}]") for i, p in enumerate(parts)]}
    if kind in COMPARISONS:
        key = value.get("key")
        if not isinstance(key, str) or not key:
            raise ApiError(400, "must be a non-empty string", param=f"{path}.key")
        if "value" not in value:
            raise ApiError(400, "Field required", param=f"{path}.value")
        return {key: {f"${kind}": value["value"]}}
    raise ApiError(400, f"unknown filter type {kind!r}", param=f"{path}.type")


def search_result(hit: rpb.SearchHit) -> dict[str, Any]:
    return {
        "file_id": hit.document_id,
        "filename": hit.source_name or hit.document_id,
        "score": hit.score,
        "attributes": struct_to_dict(hit.metadata, "metadata") if hit.HasField("metadata") else {},
        "content": [{"type": "text", "text": hit.text}],
        "chunk_id": hit.chunk_id,
        "document_id": hit.document_id,
        "vector_store_id": hit.collection,
        "start_offset": hit.start_offset,
        "end_offset": hit.end_offset,
    }
