"""``/v1/chat/completions`` read back: stored chat completions listed (filtered by model and
metadata), retrieved, updated (metadata: how feedback arrives), deleted, and their messages listed,
as the official client calls them (``client.chat.completions.list/retrieve/update/delete``,
``client.chat.completions.messages.list``); and ragtune's feedback history of one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import AfterValidator

from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.errors import ApiError
from ragtune_gateway.schemas.common import Cursor, ListPage, PathId, check_text
from ragtune_gateway.schemas.stored_completions import (
    ChatCompletionDeleted,
    CompletionFeedback,
    StoredCompletion,
    StoredMessage,
    UpdateStoredCompletion,
)
from ragtune_gateway.services import stored_completions as service

router = APIRouter(prefix="/v1/chat/completions", tags=["chat"])
Limit = Annotated[int, Query(ge=1, le=100)]
Order = Literal["asc", "desc"]
ModelFilter = Annotated[str, Query(max_length=256), AfterValidator(check_text)]


def metadata_filter(http: Request) -> dict[str, str]:
    """The ``metadata[key]=value`` pairs of the query (as the official client encodes a dict),
    bounded as metadata is: a 400 naming the pair otherwise."""
    pairs: dict[str, str] = {}
    for name, value in http.query_params.multi_items():
        if not (name.startswith("metadata[") and name.endswith("]")):
            if name == "metadata":
                raise ApiError(400, "Give metadata filters as metadata[key]=value.", param="metadata")
            continue
        key = name[len("metadata[") : -1]
        try:
            check_text(key)
            check_text(value)
        except ValueError as exc:
            raise ApiError(400, f"metadata: {exc}", param="metadata", code="invalid_value") from None
        param = f"metadata[{key:.64}]"
        if not 0 < len(key) <= 64 or len(value) > 512:
            raise ApiError(
                400, f"{param}: keys are 1-64 characters, values up to 512", param=param, code="invalid_value"
            )
        pairs[key] = value
    if len(pairs) > 16:
        raise ApiError(400, "At most 16 metadata filters.", param="metadata", code="invalid_value")
    return pairs


@router.get("", response_model=ListPage[StoredCompletion])
async def list_stored_completions(
    http: Request,
    runtime: Runtime,
    tenant: TenantId,
    model: ModelFilter = "",
    after: Cursor = "",
    limit: Limit = 20,
    order: Order = "asc",
) -> ListPage[StoredCompletion]:
    """Stored chat completions by creation time. ``model`` matches the model that answered or the
    model or alias asked for; ``metadata[key]=value`` (repeatable) keeps those whose metadata has
    every pair."""
    return await service.list_completions(runtime, tenant, model, metadata_filter(http), after, limit, order)


@router.get("/{completion_id}", response_model=StoredCompletion)
async def get_stored_completion(completion_id: PathId, runtime: Runtime, tenant: TenantId) -> StoredCompletion:
    return await service.get(runtime, tenant, completion_id)


@router.post("/{completion_id}", response_model=StoredCompletion)
async def update_stored_completion(
    completion_id: PathId, body: UpdateStoredCompletion, runtime: Runtime, tenant: TenantId, http: Request
) -> StoredCompletion:
    """Replaces the metadata (feedback: ``feedback`` good/bad, ``correction``), recorded with the
    API key that sent it."""
    return await service.update(runtime, tenant, completion_id, body, http.state.key_hash)


@router.delete("/{completion_id}", response_model=ChatCompletionDeleted)
async def delete_stored_completion(completion_id: PathId, runtime: Runtime, tenant: TenantId) -> ChatCompletionDeleted:
    return await service.delete(runtime, tenant, completion_id)


@router.get("/{completion_id}/messages", response_model=ListPage[StoredMessage])
async def list_stored_messages(
    completion_id: PathId,
    runtime: Runtime,
    tenant: TenantId,
    after: Cursor = "",
    limit: Limit = 20,
    order: Order = "asc",
) -> ListPage[StoredMessage]:
    return await service.list_messages(runtime, tenant, completion_id, after, limit, order)


@router.get("/{completion_id}/feedback", response_model=ListPage[CompletionFeedback])
async def list_feedback(completion_id: PathId, runtime: Runtime, tenant: TenantId) -> ListPage[CompletionFeedback]:
    """Every metadata update of the completion, oldest first, with the API key that sent it (ragtune)."""
    return await service.list_feedback(runtime, tenant, completion_id)
