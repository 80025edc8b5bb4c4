"""``POST /v1/chat/completions``: the request, with its ``rag`` extension, and the answer as the
official client's ``ChatCompletion`` (whole) or ``ChatCompletionChunk`` events (streamed), with the
passages a grounded answer used as ``citations``.

Only the fields ragtune sends are declared (the SDK's others are optional and absent here);
``citations`` is sent only with ``rag``, on the completion or on the first chunk."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune_gateway.schemas.common import (
    Id,
    Int64,
    JsonObject,
    Omitted,
    PosInt32,
    ResponseModel,
    Text,
    WireModel,
    check_text,
)
from ragtune_gateway.schemas.metadata import CompletionMetadata

MAX_MESSAGES = 256
MAX_PARTS = 64
MAX_CHAT_CHARS = 256_000  # all message texts together; the model's context is far smaller anyway
MAX_STOP = 8
UNTIL_THE_END = "unset = until the answer ends or the context is full (the model's context minus the prompt)"


class TextPart(WireModel):
    type: Literal["text"]
    text: Text


class ChatMessageIn(WireModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | Annotated[list[TextPart], Field(max_length=MAX_PARTS)] | None = None
    name: Text | None = Field(default=None, max_length=256)

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(WireModel):
    include_usage: bool = False


class RagOptions(WireModel):
    """The ``rag`` extension field of a chat completion request."""

    model_config = ConfigDict(extra="forbid")

    vector_store_ids: list[Id] = Field(min_length=1, max_length=16)
    top_k: int | None = Field(default=None, ge=1, le=50)
    filter: JsonObject | None = None
    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"
    score_threshold: float | None = None


# 1-128 characters each, as the generator takes them
StopSequence = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(check_text)]


class ChatCompletionRequest(WireModel):
    # Unknown OpenAI fields (logprobs, presence_penalty, ...) are ignored; unsupported ones that
    # change the answer's shape are refused by the router.
    model_config = ConfigDict(extra="ignore")

    model: Text = Field(min_length=1, max_length=256)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: PosInt32 | None = Field(default=None, description=UNTIL_THE_END)
    max_completion_tokens: PosInt32 | None = Field(default=None, description=UNTIL_THE_END)
    stop: StopSequence | list[StopSequence] | None = None
    seed: Int64 | None = None
    n: int | None = Field(default=None, ge=1, le=1, description="only 1 is supported")
    tools: list[Any] | None = Field(default=None, max_length=128)
    user: Text | None = Field(default=None, max_length=256)
    store: bool | None = Field(
        default=None, description="keep the answer (GET /v1/chat/completions); unset = the tenant's setting"
    )
    metadata: CompletionMetadata | None = Field(
        default=None, description="at most 16 pairs, keys up to 64 characters, values up to 512"
    )
    rag: RagOptions | None = None

    @field_validator("messages")
    @classmethod
    def _bounded_text(cls, messages: list[ChatMessageIn]) -> list[ChatMessageIn]:
        total = sum(len(m.text()) + len(m.name or "") for m in messages)
        if total > MAX_CHAT_CHARS:
            raise ValueError(f"{total} characters in all, over the limit of {MAX_CHAT_CHARS}")
        return messages

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        return value

    def sampling(self) -> gpb.SamplingParams:
        max_tokens = self.max_completion_tokens or self.max_tokens or 0
        return sampling_params(max_tokens, self.temperature, self.top_p, self.seed, self.stop)


def sampling_params(
    max_tokens: int, temperature: float | None, top_p: float | None, seed: int | None, stop: str | list[str] | None
) -> gpb.SamplingParams:
    """The generator's sampling parameters from the OpenAI ones (unset ones left to the generator)."""
    params = gpb.SamplingParams(max_tokens=max_tokens)
    if temperature is not None:
        params.temperature = temperature
    if top_p is not None:
        params.top_p = top_p
    if seed is not None:
        params.seed = seed
    if stop:
        params.stop.extend([stop] if isinstance(stop, str) else stop)
    return params


# Downstream field paths -> this request's parameters, for the errors the services name a field in.
SAMPLING_FIELDS = {  # the OpenAI names of the generator's sampling fields
    "sampling.temperature": "temperature",
    "sampling.top_p": "top_p",
    "sampling.max_tokens": "max_tokens",
    "sampling.stop": "stop",
    "sampling.seed": "seed",
}
GENERATE_FIELDS = {
    **SAMPLING_FIELDS,
    "messages": "messages",
    "prompt": "messages",
    "adapter": "model",
}
RAG_SEARCH_FIELDS = {
    "filter": "rag.filter",
    "collections": "rag.vector_store_ids",
    "query": "messages",
    "top_k": "rag.top_k",
}


FinishReason = Literal["stop", "length"]
ServiceTier = Literal["auto", "default", "flex", "scale", "priority", "fast"]


class Citation(ResponseModel):
    """A passage given to the model: ``text == <the document's text>[start_offset:end_offset]``."""

    index: int = Field(description="its number in the prompt, from 1: what ``[n]`` in the answer refers to")
    document_id: str
    chunk_id: str
    vector_store_id: str
    file_id: str | None = Field(description="the file, when the document is one")
    filename: str | None
    start_offset: int
    end_offset: int
    text: str
    score: float
    attributes: dict[str, Any]


class CompletionUsage(ResponseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: Omitted[dict[str, Any]] = None
    prompt_tokens_details: Omitted[dict[str, Any]] = None


class ChatCompletionMessage(ResponseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: Omitted[str] = None
    annotations: Omitted[list[dict[str, Any]]] = None
    audio: Omitted[dict[str, Any]] = None
    function_call: Omitted[dict[str, Any]] = None
    tool_calls: Omitted[list[dict[str, Any]]] = None


class Choice(ResponseModel):
    index: int
    message: ChatCompletionMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(ResponseModel):
    """The official client's ``ChatCompletion``; its optional fields ragtune does not fill are
    documented but not sent."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage | None = None
    citations: Omitted[list[Citation]] = Field(default=None, description="the passages of a grounded answer (ragtune)")
    metadata: Omitted[dict[str, str]] = None
    moderation: Omitted[dict[str, Any]] = None
    service_tier: Omitted[ServiceTier] = None
    system_fingerprint: Omitted[str] = None


class ChoiceDelta(ResponseModel):
    role: Omitted[Literal["assistant"]] = None
    content: Omitted[str] = None
    refusal: Omitted[str] = None
    audio: Omitted[dict[str, Any]] = None
    function_call: Omitted[dict[str, Any]] = None
    tool_calls: Omitted[list[dict[str, Any]]] = None


class ChunkChoice(ResponseModel):
    index: int
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(ResponseModel):
    """One SSE event of a streamed completion. ``usage`` is sent only when the request asked for
    it (``stream_options.include_usage``): null on every chunk but the last, which has no choices."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    citations: Omitted[list[Citation]] = Field(
        default=None, description="on the first chunk of a grounded answer (ragtune)"
    )
    usage: CompletionUsage | None = None
    moderation: Omitted[dict[str, Any]] = None
    obfuscation: Omitted[str] = None
    service_tier: Omitted[ServiceTier] = None
    system_fingerprint: Omitted[str] = None
