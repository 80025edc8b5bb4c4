"""Retrieval for chat completions: search the tenant's vector stores, build the grounded prompt
with numbered passages, and describe each passage as a citation."""

from __future__ import annotations

import time
from typing import Any

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune_common.prompts import grounded_system_prompt
from ragtune_common.protoconv import dict_to_struct, struct_to_dict
from ragtune_gateway import ids
from ragtune_gateway.auth import metadata
from ragtune_gateway.errors import ApiError, rpc_errors
from ragtune_gateway.runtime import GatewayRuntime

SEARCH_MODES = {"hybrid": rpb.SEARCH_MODE_HYBRID, "vector": rpb.SEARCH_MODE_VECTOR, "keyword": rpb.SEARCH_MODE_KEYWORD}
VECTOR_STORE_PREFIX = ids.VECTOR_STORE


def check_store_ids(ids: list[str], param: str) -> None:
    for i, store_id in enumerate(ids):
        if not store_id.startswith(VECTOR_STORE_PREFIX) or len(store_id) > 64:
            raise ApiError(404, f"No vector store found with id '{store_id}'.", param=f"{param}[{i}]", code="not_found")


CHAT_PARAMS = {"filter": "rag.filter", "collections": "rag.vector_store_ids", "query": "messages", "top_k": "rag.top_k"}


async def search(
    runtime: GatewayRuntime,
    tenant: str,
    store_ids: list[str],
    query: str,
    top_k: int,
    mode: str,
    filter_: dict[str, Any] | None,
    params: dict[str, str],
    ef_search: int | None = None,
) -> list[rpb.SearchHit]:
    """Hits over the tenant's stores. A store of another tenant reads as missing: the retriever
    looks names up within the tenant only. ``params`` names the request fields for errors."""
    request = rpb.SearchRequest(tenant=tenant, collections=store_ids, query=query, top_k=top_k, mode=SEARCH_MODES[mode])
    if filter_:
        request.filter.CopyFrom(dict_to_struct(filter_))
    if ef_search is not None:
        request.ef_search = ef_search
    named = f"with id '{store_ids[0]}'" if len(store_ids) == 1 else f"among {store_ids}"
    missing = ApiError(404, f"No vector store found {named}.", param=params["collections"], code="not_found")
    start = time.perf_counter()
    with rpc_errors("retriever", params=params, missing=missing):
        response = await runtime.downstream.retriever.Search(
            request, timeout=runtime.settings.rpc_timeout_s, metadata=metadata()
        )
    runtime.metrics.retrieval_latency.observe(time.perf_counter() - start)
    return list(response.hits)


def citation(index: int, hit: rpb.SearchHit) -> dict[str, Any]:
    """One passage as the client sees it: ``text == document_text[start_offset:end_offset]``."""
    return {
        "index": index,
        "document_id": hit.document_id,
        "chunk_id": hit.chunk_id,
        "vector_store_id": hit.collection,
        "file_id": hit.document_id if hit.document_id.startswith("file-") else None,
        "filename": hit.source_name or None,
        "start_offset": hit.start_offset,
        "end_offset": hit.end_offset,
        "text": hit.text,
        "score": hit.score,
        "attributes": struct_to_dict(hit.metadata, "metadata") if hit.HasField("metadata") else {},
    }


def select_passages(hits: list[rpb.SearchHit], max_chars: int, threshold: float | None) -> list[rpb.SearchHit]:
    """Best hits first while they fit in ``max_chars`` (always at least one)."""
    chosen: list[rpb.SearchHit] = []
    used = 0
    for hit in hits:
        if threshold is not None and hit.score < threshold:
            continue
        if chosen and used + len(hit.text) > max_chars:
            break
        chosen.append(hit)
        used += len(hit.text)
    return chosen


def grounded_messages(messages: list[gpb.ChatMessage], passages: list[rpb.SearchHit]) -> list[gpb.ChatMessage]:
    """The conversation with the numbered passages added to (or as) the system message."""
    system = [m.content for m in messages if m.role == "system"]
    content = grounded_system_prompt(system, [(hit.source_name or hit.document_id, hit.text) for hit in passages])
    return [gpb.ChatMessage(role="system", content=content), *(m for m in messages if m.role != "system")]


def last_user_text(messages: list[gpb.ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user" and message.content.strip():
            return message.content
    raise ApiError(400, "RAG needs a user message to search with.", param="messages", code="invalid_value")
