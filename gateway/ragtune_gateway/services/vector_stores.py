"""Vector stores (``/v1/vector_stores``) as retriever collections of the tenant, named
``vs_<random>``: creating, listing and deleting them, ingesting gateway files into them (document
id = file id, source name = filename), and searching them with OpenAI-style filters.

A store of another tenant reads as missing: the retriever looks names up within the tenant only."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune_common.paging import next_page_token
from ragtune_common.protoconv import dict_to_struct, struct_to_dict
from ragtune_gateway import ids, limits
from ragtune_gateway.errors import ApiError, best_effort, not_found
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.common import ListPage
from ragtune_gateway.schemas.vector_stores import (
    ADD_FILE_FIELDS,
    CREATE_STORE_FIELDS,
    CREATE_STORE_FILES_FIELDS,
    SEARCH_FIELDS,
    AddFile,
    CreateStore,
    FileCounts,
    RankingOptions,
    SearchBody,
    SearchContent,
    SearchPage,
    SearchResult,
    StaticChunkingSettings,
    StaticChunkingStrategy,
    VectorStore,
    VectorStoreDeleted,
    VectorStoreFile,
    VectorStoreFileDeleted,
)
from ragtune_gateway.services import files, retrieval

RETRIEVER_MIME = {"text/plain", "text/markdown", "text/html", "application/pdf"}
COMPARISONS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"}
COUNT_PAGE_SIZE = 1000
CAP_SETTING = "RAGTUNE_GATEWAY_MAX_VECTOR_STORES_PER_TENANT"
CAP_KIND = "vector-stores"
ID_BYTES = 12  # a store id's random bytes, in hex after its prefix


def missing_store(store_id: str) -> ApiError:
    return not_found("vector store", store_id)


def store_object(c: rpb.Collection) -> VectorStore:
    meta = struct_to_dict(c.metadata, "metadata") if c.HasField("metadata") else {}
    created = c.created_at.seconds if c.HasField("created_at") else 0
    return VectorStore(
        id=c.name,
        created_at=created,
        name=meta.get("name"),
        metadata=meta.get("metadata") or {},
        file_counts=FileCounts(completed=c.document_count, total=c.document_count),
        last_active_at=created,
        chunk_count=c.chunk_count,
        embedding_model=c.embedding_model,
        chunking_strategy=chunking_object(c.chunking),
    )


def chunking_object(chunking: rpb.ChunkingConfig) -> StaticChunkingStrategy:
    settings = StaticChunkingSettings(
        max_chunk_size_tokens=chunking.max_tokens, chunk_overlap_tokens=chunking.overlap_tokens
    )
    return StaticChunkingStrategy(static=settings)


def store_file_object(store_id: str, doc: rpb.Document) -> VectorStoreFile:
    return VectorStoreFile(
        id=doc.id,
        created_at=doc.created_at.seconds if doc.HasField("created_at") else 0,
        vector_store_id=store_id,
        usage_bytes=doc.char_count,
        attributes=struct_to_dict(doc.metadata, "metadata"),
        chunk_count=doc.chunk_count,
        filename=doc.source_name or None,
    )


def search_result(hit: rpb.SearchHit) -> SearchResult:
    return SearchResult(
        file_id=hit.document_id,
        filename=hit.source_name or hit.document_id,
        score=hit.score,
        attributes=struct_to_dict(hit.metadata, "metadata") if hit.HasField("metadata") else {},
        content=[SearchContent(text=hit.text)],
        chunk_id=hit.chunk_id,
        document_id=hit.document_id,
        vector_store_id=hit.collection,
        start_offset=hit.start_offset,
        end_offset=hit.end_offset,
        vector_rank=hit.vector_rank or None,
        keyword_rank=hit.keyword_rank or None,
    )


# Use cases.


async def create_store(runtime: GatewayRuntime, tenant: str, body: CreateStore) -> VectorStore:
    """A new store with the given files, all added in one transaction or none (then no store)."""
    documents = await documents_for(runtime, tenant, body.file_ids, None, "file_ids")  # all checked first
    store_id = ids.new_id(ids.VECTOR_STORE, ID_BYTES)
    request = rpb.CreateCollectionRequest(tenant=tenant, name=store_id)
    request.metadata.CopyFrom(dict_to_struct({"name": body.name, "metadata": body.metadata or {}}))
    if body.chunking_strategy and body.chunking_strategy.static:
        static = body.chunking_strategy.static
        request.chunking.max_tokens = static.max_chunk_size_tokens
        request.chunking.overlap_tokens = static.chunk_overlap_tokens
    retriever = runtime.downstream.retriever
    collection = await create_collection_within_cap(runtime, tenant, request)
    if documents:
        try:
            await retriever.upsert_documents(
                tenant, store_id, documents, fields=CREATE_STORE_FILES_FIELDS, missing=missing_store(store_id)
            )
        except BaseException:  # nothing half-written: the store goes if its files cannot be added
            with best_effort(f"delete the vector store {store_id} whose files failed"):
                await retriever.delete_collection(tenant, store_id)
            raise
        collection = await get_collection(runtime, tenant, store_id)
    return store_object(collection)


async def list_stores(runtime: GatewayRuntime, tenant: str, after: str, limit: int) -> ListPage[VectorStore]:
    token = next_page_token([after], 1) if after else ""  # the retriever's cursor is the last name
    response = await runtime.downstream.retriever.list_collections(tenant, limit, token)
    data = [store_object(c) for c in response.collections if c.name.startswith(ids.VECTOR_STORE)]
    return ListPage[VectorStore].of(data, has_more=bool(response.next_page_token))


async def get_store(runtime: GatewayRuntime, tenant: str, store_id: str) -> VectorStore:
    return store_object(await get_collection(runtime, tenant, store_id))


async def delete_store(runtime: GatewayRuntime, tenant: str, store_id: str) -> VectorStoreDeleted:
    await runtime.downstream.retriever.delete_collection(tenant, store_id, missing=missing_store(store_id))
    return VectorStoreDeleted(id=store_id)


async def add_file(runtime: GatewayRuntime, tenant: str, store_id: str, body: AddFile) -> VectorStoreFile:
    await get_collection(runtime, tenant, store_id)
    documents = await documents_for(runtime, tenant, [body.file_id], body.attributes, "file_id")
    await runtime.downstream.retriever.upsert_documents(
        tenant, store_id, documents, fields=ADD_FILE_FIELDS, missing=missing_store(store_id)
    )
    return await get_store_file(runtime, tenant, store_id, body.file_id)


async def list_store_files(
    runtime: GatewayRuntime, tenant: str, store_id: str, after: str, limit: int
) -> ListPage[VectorStoreFile]:
    token = next_page_token([after], 1) if after else ""
    response = await runtime.downstream.retriever.list_documents(
        tenant, store_id, limit, token, missing=missing_store(store_id)
    )
    data = [store_file_object(store_id, d) for d in response.documents]
    return ListPage[VectorStoreFile].of(data, has_more=bool(response.next_page_token))


async def get_store_file(runtime: GatewayRuntime, tenant: str, store_id: str, file_id: str) -> VectorStoreFile:
    await get_collection(runtime, tenant, store_id)
    document = await runtime.downstream.retriever.get_document(
        tenant, store_id, file_id, missing=not_found("file", file_id)
    )
    return store_file_object(store_id, document)


async def delete_store_file(
    runtime: GatewayRuntime, tenant: str, store_id: str, file_id: str
) -> VectorStoreFileDeleted:
    deleted = await runtime.downstream.retriever.delete_documents(
        tenant, store_id, [file_id], missing=missing_store(store_id)
    )
    if file_id not in deleted:
        raise not_found("file", file_id)
    return VectorStoreFileDeleted(id=file_id)


async def search_store(runtime: GatewayRuntime, tenant: str, store_id: str, body: SearchBody) -> SearchPage:
    query = body.query if isinstance(body.query, str) else " ".join(body.query)
    if not query.strip():
        raise ApiError(400, "must not be empty", param="query")
    retrieval.check_store_ids([store_id], SEARCH_FIELDS["collections"])  # before the filters, as ever
    ranking = body.ranking_options or RankingOptions()
    mode = ranking.ranker if ranking.ranker in retrieval.SEARCH_MODES else "hybrid"
    filters = search_filter(body.filters) if body.filters else None
    hits = await retrieval.search(
        runtime, tenant, [store_id], query, body.max_num_results, mode, filters, SEARCH_FIELDS, body.ef_search
    )
    if ranking.score_threshold is not None:
        hits = [h for h in hits if h.score >= ranking.score_threshold]
    return SearchPage(search_query=[query], data=[search_result(h) for h in hits])


# Helpers of the use cases (and of other resources).


async def create_collection_within_cap(
    runtime: GatewayRuntime, tenant: str, request: rpb.CreateCollectionRequest
) -> rpb.Collection:
    """CreateCollection if the tenant has room for another store, counting the creations in flight
    in every replica (see :mod:`ragtune_gateway.limits`); 409 otherwise (only a delete frees one).
    No database connection is held while the retriever is called."""
    retriever, settings = runtime.downstream.retriever, runtime.settings
    cap = settings.max_vector_stores_per_tenant
    if not cap:
        return await retriever.create_collection(request, fields=CREATE_STORE_FIELDS)
    ttl_s = limits.place_ttl_s(settings.rpc_timeout_s)
    async with limits.reserved_place(runtime.pool, tenant, CAP_KIND, ttl_s, place_of(request.name)) as place:
        # a creation in flight counts once, as its place or as its collection (both may be there)
        held = len(await store_names(runtime, tenant) | {store_of(p) for p in place.other_ids})
        if held >= cap:
            raise limits.cap_reached("vector stores", held, cap, CAP_SETTING, None)
        place.ensure_time_for(settings.rpc_timeout_s, "retriever")
        return await retriever.create_collection(request, fields=CREATE_STORE_FIELDS)


def place_of(store_id: str) -> UUID:
    """The id of the place a store's creation holds under the cap: the store id's random bytes,
    zero-padded to a UUID's 16 (:func:`store_of` reads the store id back)."""
    return UUID(bytes=bytes.fromhex(store_id.removeprefix(ids.VECTOR_STORE)).ljust(16, b"\0"))


def store_of(place_id: UUID) -> str:
    return ids.VECTOR_STORE + place_id.bytes[:ID_BYTES].hex()


async def store_names(runtime: GatewayRuntime, tenant: str) -> set[str]:
    """The names of the tenant's vector stores (retriever collections named as stores), every page read."""
    names: set[str] = set()
    token = ""
    while True:
        response = await runtime.downstream.retriever.list_collections(tenant, COUNT_PAGE_SIZE, token)
        names.update(c.name for c in response.collections if c.name.startswith(ids.VECTOR_STORE))
        token = response.next_page_token
        if not token:
            return names


async def get_collection(runtime: GatewayRuntime, tenant: str, store_id: str) -> rpb.Collection:
    return await runtime.downstream.retriever.get_collection(tenant, store_id, missing=missing_store(store_id))


async def documents_for(
    runtime: GatewayRuntime, tenant: str, file_ids: list[str], attributes: dict[str, Any] | None, param: str
) -> list[rpb.DocumentInput]:
    """The tenant's document files as retriever inputs; every id is checked, and their total size
    against ``max_request_file_bytes`` (one retriever message carries them all), before any is read."""
    records = []
    total, limit = 0, runtime.settings.max_request_file_bytes
    for i, file_id in enumerate(file_ids):
        where = f"{param}[{i}]" if param.endswith("ids") else param
        record = await files.owned_file(runtime, tenant, file_id, where)
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
