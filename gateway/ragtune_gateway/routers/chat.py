"""``POST /v1/chat/completions``: OpenAI chat completions over the generator, optionally grounded
in the caller's vector stores (the ``rag`` extension field), streamed as SSE or returned whole."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ragtune_gateway import limits
from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.schemas.chat import ChatCompletion, ChatCompletionRequest
from ragtune_gateway.services import chat

router = APIRouter(prefix="/v1/chat", tags=["chat"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post(
    "/completions",
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}, "description": "ChatCompletionChunk events with stream"}},
)
async def create_chat_completion(
    body: ChatCompletionRequest, runtime: Runtime, tenant: TenantId, http: Request
) -> ChatCompletion | StreamingResponse:
    if not body.stream:
        return await chat.complete(runtime, tenant, body)
    events, release = await chat.stream(runtime, tenant, body, http.state.key_hash)
    return limits.limited_stream(events, release, headers=SSE_HEADERS)
