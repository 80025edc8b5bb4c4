"""``/v1/vector_stores``: the caller's stores, their files, and search over them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune_common.paging import next_page_token
from ragtune_common.protoconv import dict_to_struct
from ragtune_gateway import limits, rag, store
from ragtune_gateway import vector_stores as vs
from ragtune_gateway.auth import Runtime, TenantId, metadata
from ragtune_gateway.errors import ApiError, best_effort, not_found, rpc_errors
from ragtune_gateway.schemas.common import Cursor, PathId
from ragtune_gateway.schemas.vector_stores import AddFile, CreateStore, RankingOptions, SearchBody

router = APIRouter(prefix="/v1/vector_stores", tags=["vector stores"])


@router.post("")
async def create_store(body: CreateStore, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    documents = await vs.documents_for(runtime, tenant, body.file_ids, None, "file_ids")  # all checked first
    store_id = store.new_id(rag.VECTOR_STORE_PREFIX)
    request = rpb.CreateCollectionRequest(tenant=tenant, name=store_id)
    request.metadata.CopyFrom(dict_to_struct({"name": body.name, "metadata": body.metadata or {}}))
    if body.chunking_strategy and body.chunking_strategy.static:
        static = body.chunking_strategy.static
        request.chunking.max_tokens = static.max_chunk_size_tokens
        request.chunking.overlap_tokens = static.chunk_overlap_tokens
    chunk_params = {
        "chunking.max_tokens": "chunking_strategy.static.max_chunk_size_tokens",
        "chunking.overlap_tokens": "chunking_strategy.static.chunk_overlap_tokens",
    }
    cap = runtime.settings.max_vector_stores_per_tenant
    async with limits.tenant_cap(runtime.pool, tenant, "vector-stores"):  # one creation at a time, globally
        if cap and (count := await vs.count_stores(runtime, tenant)) >= cap:
            setting = "RAGTUNE_GATEWAY_MAX_VECTOR_STORES_PER_TENANT"
            raise limits.cap_reached("vector stores", count, cap, setting, None)  # 409: only a delete frees one
        with rpc_errors("retriever", params=chunk_params):
            collection = (
                await runtime.downstream.retriever.CreateCollection(
                    request, timeout=runtime.settings.rpc_timeout_s, metadata=metadata()
                )
            ).collection
    if documents:
        try:
            await vs.upsert(runtime, tenant, store_id, documents, "file_ids")
        except BaseException:  # nothing half-written: the store goes if its files cannot be added
            with best_effort(f"delete the vector store {store_id} whose files failed"):
                await runtime.downstream.retriever.DeleteCollection(
                    rpb.DeleteCollectionRequest(tenant=tenant, name=store_id),
                    timeout=runtime.settings.rpc_timeout_s,
                    metadata=metadata(),
                )
            raise
        collection = await vs.get_store(runtime, tenant, store_id)
    return vs.store_object(collection)


@router.get("")
async def list_stores(
    runtime: Runtime, tenant: TenantId, after: Cursor = "", limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    token = next_page_token([after], 1) if after else ""  # the retriever's cursor is the last name
    request = rpb.ListCollectionsRequest(tenant=tenant)
    request.page.page_size, request.page.page_token = limit, token
    with rpc_errors("retriever"):
        response = await runtime.downstream.retriever.ListCollections(
            request, timeout=runtime.settings.rpc_timeout_s, metadata=metadata()
        )
    data = [vs.store_object(c) for c in response.collections if c.name.startswith(rag.VECTOR_STORE_PREFIX)]
    return {
        "object": "list",
        "data": data,
        "has_more": bool(response.next_page_token),
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


@router.get("/{store_id}")
async def get_store(store_id: PathId, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    return vs.store_object(await vs.get_store(runtime, tenant, store_id))


@router.delete("/{store_id}")
async def delete_store(store_id: PathId, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    with rpc_errors("retriever", missing=vs.missing_store(store_id)):
        await runtime.downstream.retriever.DeleteCollection(
            rpb.DeleteCollectionRequest(tenant=tenant, name=store_id),
            timeout=runtime.settings.rpc_timeout_s,
            metadata=metadata(),
        )
    return {"id": store_id, "object": "vector_store.deleted", "deleted": True}


@router.post("/{store_id}/files")
async def add_file(store_id: PathId, body: AddFile, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    await vs.get_store(runtime, tenant, store_id)
    documents = await vs.documents_for(runtime, tenant, [body.file_id], body.attributes, "file_id")
    await vs.upsert(runtime, tenant, store_id, documents, "file_id")
    return await get_store_file(store_id, body.file_id, runtime, tenant)


@router.get("/{store_id}/files")
async def list_store_files(
    store_id: PathId,
    runtime: Runtime,
    tenant: TenantId,
    after: Cursor = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    request = rpb.ListDocumentsRequest(tenant=tenant, collection=store_id)
    request.page.page_size, request.page.page_token = limit, next_page_token([after], 1) if after else ""
    with rpc_errors("retriever", missing=vs.missing_store(store_id)):
        response = await runtime.downstream.retriever.ListDocuments(
            request, timeout=runtime.settings.rpc_timeout_s, metadata=metadata()
        )
    data = [vs.store_file_object(store_id, d) for d in response.documents]
    return {
        "object": "list",
        "data": data,
        "has_more": bool(response.next_page_token),
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


@router.get("/{store_id}/files/{file_id}")
async def get_store_file(store_id: PathId, file_id: PathId, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    await vs.get_store(runtime, tenant, store_id)
    with rpc_errors("retriever", missing=not_found("file", file_id)):
        response = await runtime.downstream.retriever.GetDocument(
            rpb.GetDocumentRequest(tenant=tenant, collection=store_id, id=file_id),
            timeout=runtime.settings.rpc_timeout_s,
            metadata=metadata(),
        )
    response.document.ClearField("text")
    return vs.store_file_object(store_id, response.document)


@router.delete("/{store_id}/files/{file_id}")
async def delete_store_file(store_id: PathId, file_id: PathId, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    with rpc_errors("retriever", missing=vs.missing_store(store_id)):
        response = await runtime.downstream.retriever.DeleteDocuments(
            rpb.DeleteDocumentsRequest(tenant=tenant, collection=store_id, ids=[file_id]),
            timeout=runtime.settings.rpc_timeout_s,
            metadata=metadata(),
        )
    if file_id not in response.deleted_ids:
        raise not_found("file", file_id)
    return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}


@router.post("/{store_id}/search")
async def search_store(store_id: PathId, body: SearchBody, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    query = body.query if isinstance(body.query, str) else " ".join(body.query)
    if not query.strip():
        raise ApiError(400, "must not be empty", param="query")
    rag.check_store_ids([store_id], "vector_store_id")
    ranking = body.ranking_options or RankingOptions()
    mode = ranking.ranker if ranking.ranker in rag.SEARCH_MODES else "hybrid"
    filters = vs.search_filter(body.filters) if body.filters else None
    params = {
        "filter": "filters",
        "collections": "vector_store_id",
        "query": "query",
        "top_k": "max_num_results",
        "ef_search": "ef_search",
    }
    hits = await rag.search(
        runtime, tenant, [store_id], query, body.max_num_results, mode, filters, params, body.ef_search
    )
    if ranking.score_threshold is not None:
        hits = [h for h in hits if h.score >= ranking.score_threshold]
    return {
        "object": "vector_store.search_results.page",
        "search_query": [query],
        "data": [vs.search_result(h) for h in hits],
        "has_more": False,
        "next_page": None,
    }
