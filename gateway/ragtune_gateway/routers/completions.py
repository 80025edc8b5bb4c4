"""``POST /v1/completions``: legacy OpenAI text completions on a raw prompt, streamed as SSE or
returned whole."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ragtune_gateway import limits
from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.schemas.completions import Completion, CompletionRequest
from ragtune_gateway.services import completions

router = APIRouter(prefix="/v1", tags=["completions"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post(
    "/completions",
    response_model=Completion,
    responses={200: {"content": {"text/event-stream": {}}, "description": "text_completion chunks with stream"}},
)
async def create_completion(
    body: CompletionRequest, runtime: Runtime, tenant: TenantId, http: Request
) -> Completion | StreamingResponse:
    if not body.stream:
        return await completions.complete(runtime, tenant, body)
    events, release = await completions.stream(runtime, tenant, body, http.state.key_hash)
    return limits.limited_stream(events, release, headers=SSE_HEADERS)
