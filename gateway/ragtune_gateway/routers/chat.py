"""``POST /v1/chat/completions``: OpenAI chat completions over the generator, optionally grounded
in the caller's vector stores (the ``rag`` extension field), streamed as SSE or returned whole."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune_common.logging import request_id_var
from ragtune_gateway import aliases, completion, limits, rag
from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.errors import ApiError
from ragtune_gateway.routers.models import resolve_adapter
from ragtune_gateway.schemas.chat import ChatCompletionRequest

router = APIRouter(prefix="/v1/chat", tags=["chat"])


def _messages(request: ChatCompletionRequest) -> list[gpb.ChatMessage]:
    out = []
    for message in request.messages:
        role = "system" if message.role == "developer" else message.role
        out.append(gpb.ChatMessage(role=role, content=message.text()))
    return out


@router.post("/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, runtime: Runtime, tenant: TenantId, http: Request
) -> dict[str, Any] | StreamingResponse:
    if body.tools:
        raise ApiError(400, "Tools are not supported.", param="tools", code="unsupported_parameter")
    adapter = await resolve_adapter(runtime, tenant, body.model)
    messages = _messages(body)
    citations: list[dict[str, Any]] | None = None
    if body.rag is not None:
        rag.check_store_ids(body.rag.vector_store_ids, "rag.vector_store_ids")
        top_k = body.rag.top_k or runtime.settings.rag_default_top_k
        hits = await rag.search(
            runtime,
            tenant,
            body.rag.vector_store_ids,
            rag.last_user_text(messages),
            top_k,
            body.rag.mode,
            body.rag.filter,
            rag.CHAT_PARAMS,
        )
        passages = rag.select_passages(hits, runtime.settings.rag_max_context_chars, body.rag.score_threshold)
        messages = rag.grounded_messages(messages, passages)
        citations = [rag.citation(i, hit) for i, hit in enumerate(passages, 1)]
    request = gpb.GenerateRequest(
        messages=messages, sampling=body.sampling(), adapter=adapter, request_id=request_id_var.get(), tenant=tenant
    )
    # an alias answers under the name of the adapter that holds it (as OpenAI names the snapshot)
    shown = adapter if adapter and aliases.is_alias(body.model) else body.model
    if not body.stream:
        return await completion.complete(runtime, request, shown, citations)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    release = runtime.streams.acquire(http.state.key_hash)  # 429 beyond max_streams_per_key
    try:
        events = await completion.stream(runtime, request, shown, citations, include_usage)
    except BaseException:
        release()
        raise
    return limits.limited_stream(events, release, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
