"""``POST /v1/chat/completions``: the request, with its ``rag`` extension."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune_gateway.schemas.common import Id, Int64, JsonObject, PosInt32, Text, WireModel, check_text

MAX_MESSAGES = 256
MAX_PARTS = 64
MAX_CHAT_CHARS = 256_000  # all message texts together; the model's context is far smaller anyway
MAX_STOP = 8


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
    max_tokens: PosInt32 | None = None
    max_completion_tokens: PosInt32 | None = None
    stop: StopSequence | list[StopSequence] | None = None
    seed: Int64 | None = None
    n: int | None = Field(default=None, ge=1, le=1, description="only 1 is supported")
    tools: list[Any] | None = Field(default=None, max_length=128)
    user: Text | None = Field(default=None, max_length=256)
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
        params = gpb.SamplingParams(max_tokens=self.max_completion_tokens or self.max_tokens or 0)
        if self.temperature is not None:
            params.temperature = self.temperature
        if self.top_p is not None:
            params.top_p = self.top_p
        if self.seed is not None:
            params.seed = self.seed
        if self.stop:
            params.stop.extend([self.stop] if isinstance(self.stop, str) else self.stop)
        return params
