"""Stored chat completions, as OpenAI's ``/v1/chat/completions`` keeps them: a completion is stored
when its request says ``store: true``, or says nothing and its tenant stores by default (the admin
setting ``store_completions``); ``store: false`` always wins. What is kept: the request's messages as
sent, the model or alias named and the adapter that answered, the sampling and ``rag`` options, the
answer (choices, usage), the passages and citations of a grounded answer, and the metadata.

Metadata updates (``POST /v1/chat/completions/{id}``) are how feedback arrives (the keys of
:mod:`ragtune_gateway.schemas.metadata`); each is recorded with the API key that sent it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.repositories import stored_completions as rows
from ragtune_gateway.repositories.stored_completions import UNCHANGED, Order, StoredRow
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.chat import ChatCompletion, ChatCompletionRequest, Choice, Citation, CompletionUsage
from ragtune_gateway.schemas.common import ListPage
from ragtune_gateway.schemas.metadata import CORRECTION_KEY
from ragtune_gateway.schemas.stored_completions import (
    ChatCompletionDeleted,
    CompletionFeedback,
    StoredCompletion,
    StoredMessage,
    UpdateStoredCompletion,
)
from ragtune_gateway.services import distilled_files

REQUEST_FIELDS = {  # what is kept of a request besides its messages and model
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "n",
    "user",
    "stream",
    "rag",
}


async def record(
    runtime: GatewayRuntime, tenant: str, body: ChatCompletionRequest, adapter: str, completion: ChatCompletion
) -> bool:
    """Stores the answered ``completion`` as the request and the tenant's setting say; whether it was."""
    if body.store is False:
        return False
    metadata = body.metadata or {}
    row = StoredRow(
        id=completion.id,
        tenant_id=tenant,
        model=completion.model,
        requested_model=body.model,
        adapter=adapter,
        messages=[m.model_dump(mode="json", exclude_none=True) for m in body.messages],
        request=body.model_dump(mode="json", include=REQUEST_FIELDS, exclude_none=True),
        choices=[c.model_dump(mode="json") for c in completion.choices],
        usage=completion.usage.model_dump(mode="json", exclude_none=True) if completion.usage else None,
        citations=None if completion.citations is None else [c.model_dump(mode="json") for c in completion.citations],
        metadata=metadata,
        correction=metadata.get(CORRECTION_KEY) or None,
        created_at=datetime.now(UTC),
        updated_at=None,
        updated_by=None,
    )
    return await rows.insert(runtime.pool, row, tenant_default=body.store is None)


def stored_object(row: StoredRow) -> StoredCompletion:
    return StoredCompletion(
        id=row.id,
        created=int(row.created_at.timestamp()),
        model=row.model,
        request_model=row.requested_model,
        choices=[Choice.model_validate(c) for c in row.choices],
        usage=CompletionUsage.model_validate(row.usage) if row.usage else None,
        citations=[Citation.model_validate(c) for c in row.citations] if row.citations is not None else None,
        metadata=row.metadata,
        correction=row.correction,
        updated_at=int(row.updated_at.timestamp()) if row.updated_at else None,
    )


async def _row(runtime: GatewayRuntime, tenant: str, completion_id: str) -> StoredRow:
    row = await rows.get(runtime.pool, tenant, completion_id)
    if row is None:
        raise not_found("stored chat completion", completion_id, "completion_id")
    return row


async def get(runtime: GatewayRuntime, tenant: str, completion_id: str) -> StoredCompletion:
    return stored_object(await _row(runtime, tenant, completion_id))


async def list_completions(
    runtime: GatewayRuntime, tenant: str, model: str, metadata: dict[str, str], after: str, limit: int, order: Order
) -> ListPage[StoredCompletion]:
    """A page of the tenant's stored completions by creation time; ``model`` matches the model
    that answered or the model or alias the request named; every ``metadata`` pair must match."""
    if after and not await rows.exists(runtime.pool, tenant, after):
        raise ApiError(400, f"No stored chat completion '{after}' to list after.", param="after", code="invalid_value")
    found = await rows.list_page(
        runtime.pool, tenant, model=model, metadata=metadata, after=after, limit=limit + 1, order=order
    )
    return ListPage[StoredCompletion].of([stored_object(r) for r in found[:limit]], has_more=len(found) > limit)


async def update(
    runtime: GatewayRuntime, tenant: str, completion_id: str, body: UpdateStoredCompletion, key_hash: str
) -> StoredCompletion:
    """OpenAI's metadata update, and ragtune's longer ``correction``: recorded with who sent it."""
    given = body.model_fields_set
    metadata: Any = UNCHANGED
    correction: Any = UNCHANGED
    if "metadata" in given:
        metadata = body.metadata or {}
    if "correction" in given:
        if body.metadata and CORRECTION_KEY in body.metadata:
            raise ApiError(
                400,
                f"A correction is given both in metadata.{CORRECTION_KEY} and in correction; give one.",
                param="correction",
                code="invalid_value",
            )
        correction = body.correction or None
    row = await rows.update(runtime.pool, tenant, completion_id, key_hash, metadata=metadata, correction=correction)
    if row is None:
        raise not_found("stored chat completion", completion_id, "completion_id")
    return stored_object(row)


async def delete(runtime: GatewayRuntime, tenant: str, completion_id: str) -> ChatCompletionDeleted:
    """Deletes the row itself (with its feedback history), after taking it out of every distilled
    file no fine-tuning job has used (:mod:`.distilled_files`): nothing of it is left."""
    await _row(runtime, tenant, completion_id)
    await distilled_files.remove_completion(runtime, tenant, completion_id)
    if not await rows.delete(runtime.pool, tenant, completion_id):
        raise not_found("stored chat completion", completion_id, "completion_id")
    return ChatCompletionDeleted(id=completion_id)


def stored_message(completion_id: str, index: int, message: dict[str, Any]) -> StoredMessage:
    content = message.get("content")
    parts = content if isinstance(content, list) else None
    text = "".join(str(p.get("text", "")) for p in parts) if parts is not None else content
    return StoredMessage(
        id=f"{completion_id}-{index}", role=message["role"], content=text, name=message.get("name"), content_parts=parts
    )


async def list_messages(
    runtime: GatewayRuntime, tenant: str, completion_id: str, after: str, limit: int, order: Order
) -> ListPage[StoredMessage]:
    """The request's messages as sent, oldest first by default (as OpenAI)."""
    row = await _row(runtime, tenant, completion_id)
    messages = [stored_message(row.id, i, m) for i, m in enumerate(row.messages)]
    if order == "desc":
        messages.reverse()
    start = 0
    if after:
        positions = [i for i, m in enumerate(messages) if m.id == after]
        if not positions:
            raise ApiError(400, f"No message '{after}' in this completion.", param="after", code="invalid_value")
        start = positions[0] + 1
    return ListPage[StoredMessage].of(messages[start : start + limit], has_more=start + limit < len(messages))


async def list_feedback(runtime: GatewayRuntime, tenant: str, completion_id: str) -> ListPage[CompletionFeedback]:
    """Every metadata update of the completion, oldest first: who sent it, when, what it left."""
    await _row(runtime, tenant, completion_id)
    return ListPage[CompletionFeedback].of(
        [
            CompletionFeedback(
                completion_id=f.completion_id,
                api_key_id=f.api_key_id,
                metadata=f.metadata,
                feedback=f.feedback,
                correction=f.correction,
                created_at=int(f.created_at.timestamp()),
            )
            for f in await rows.feedback(runtime.pool, tenant, completion_id)
        ]
    )
