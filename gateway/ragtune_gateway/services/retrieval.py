"""Search over the tenant's vector stores: what chat completions with RAG and the vector-store
search route share. A store of another tenant reads as missing: the retriever looks names up
within the tenant only."""

from __future__ import annotations

import time
from typing import Any

from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune_common.protoconv import dict_to_struct
from ragtune_gateway import ids
from ragtune_gateway.downstream.errors import Fields
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.runtime import GatewayRuntime

SEARCH_MODES = {"hybrid": rpb.SEARCH_MODE_HYBRID, "vector": rpb.SEARCH_MODE_VECTOR, "keyword": rpb.SEARCH_MODE_KEYWORD}
MAX_STORE_ID_CHARS = 64


def check_store_ids(store_ids: list[str], param: str) -> None:
    """Ids that cannot name a vector store are 404 at once, naming the list item."""
    for i, store_id in enumerate(store_ids):
        if not store_id.startswith(ids.VECTOR_STORE) or len(store_id) > MAX_STORE_ID_CHARS:
            raise not_found("vector store", store_id, f"{param}[{i}]")


async def search(
    runtime: GatewayRuntime,
    tenant: str,
    store_ids: list[str],
    query: str,
    top_k: int,
    mode: str,
    filter_: dict[str, Any] | None,
    fields: Fields,
    ef_search: int | None = None,
) -> list[rpb.SearchHit]:
    """Hits over the tenant's stores, best first. ``fields`` names the request's fields for errors
    (its ``collections`` entry the parameter that lists the stores)."""
    check_store_ids(store_ids, fields["collections"])
    request = rpb.SearchRequest(tenant=tenant, collections=store_ids, query=query, top_k=top_k, mode=SEARCH_MODES[mode])
    if filter_:
        request.filter.CopyFrom(dict_to_struct(filter_))
    if ef_search is not None:
        request.ef_search = ef_search
    named = f"with id '{store_ids[0]}'" if len(store_ids) == 1 else f"among {store_ids}"
    missing = ApiError(404, f"No vector store found {named}.", param=fields["collections"], code="not_found")
    start = time.perf_counter()
    hits = await runtime.downstream.retriever.search(request, fields=fields, missing=missing)
    runtime.metrics.retrieval_latency.observe(time.perf_counter() - start)
    return hits
