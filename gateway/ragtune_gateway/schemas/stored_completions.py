"""Stored chat completions (``/v1/chat/completions`` GET, POST ``/{id}``, DELETE, ``/{id}/messages``)
as the official client reads them, the update that carries feedback (see
:mod:`ragtune_gateway.schemas.metadata` for its reserved keys), and the feedback history."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from ragtune_gateway.schemas.chat import ChatCompletion
from ragtune_gateway.schemas.common import Deleted, Omitted, ResponseModel, Text, WireModel
from ragtune_gateway.schemas.metadata import CompletionMetadata

MAX_CORRECTION_CHARS = 32_768
Correction = Annotated[Text, Field(max_length=MAX_CORRECTION_CHARS)]


class UpdateStoredCompletion(WireModel):
    """``POST /v1/chat/completions/{id}``: OpenAI's update (``metadata`` replaces the metadata; null
    clears it; absent leaves it), and ragtune's ``correction`` for one longer than a metadata value
    (null clears it). A ``correction`` in both is refused."""

    model_config = ConfigDict(extra="ignore")

    metadata: CompletionMetadata | None = None
    correction: Correction | None = Field(
        default=None,
        description=f"the corrected answer, up to {MAX_CORRECTION_CHARS} characters (ragtune); null clears it",
    )


# Responses


class StoredCompletion(ChatCompletion):
    """A stored chat completion: the official client's ``ChatCompletion`` (metadata always sent),
    with ragtune's ``request_model``, ``correction`` and ``updated_at``."""

    metadata: dict[str, str] = Field(default_factory=dict)  # type: ignore[assignment]
    request_model: str = Field(description="the model or alias the request named (ragtune)")
    correction: Omitted[str] = Field(default=None, description="the corrected answer, when one was given (ragtune)")
    updated_at: Omitted[int] = Field(default=None, description="when its metadata last changed (ragtune)")


class StoredMessage(ResponseModel):
    """A message of the stored request, as the official client's ``ChatCompletionStoreMessage``."""

    id: str
    role: str
    content: str | None = None
    name: Omitted[str] = None
    content_parts: list[dict[str, Any]] | None = None
    refusal: Omitted[str] = None
    annotations: Omitted[list[dict[str, Any]]] = None
    audio: Omitted[dict[str, Any]] = None
    function_call: Omitted[dict[str, Any]] = None
    tool_calls: Omitted[list[dict[str, Any]]] = None


class ChatCompletionDeleted(Deleted):
    object: Literal["chat.completion.deleted"] = "chat.completion.deleted"


class CompletionFeedback(ResponseModel):
    """One metadata update of a stored completion: who sent it, when, and what it left (ragtune)."""

    object: Literal["chat.completion.feedback"] = "chat.completion.feedback"
    completion_id: str
    api_key_id: str | None = Field(description="the API key that sent it (null: the admin or a deleted key)")
    metadata: dict[str, str]
    feedback: str | None
    correction: str | None
    created_at: int
