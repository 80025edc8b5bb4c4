"""``POST /v1/completions`` (legacy text completion): a raw prompt continued by the base model, an
adapter or an alias, answered as the official client's ``Completion`` (whole) or as a stream of
``Completion`` chunks (``object: text_completion``), as OpenAI sends them.

One prompt and one choice per request; options that would change the answer's shape (``echo``,
``logprobs``, ``suffix``, ``best_of`` > 1, ``n`` > 1) are refused naming the field unless they
have their default value."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Discriminator, Field, Tag, field_validator

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune_gateway.schemas.chat import (
    MAX_STOP,
    SAMPLING_FIELDS,
    CompletionUsage,
    FinishReason,
    StopSequence,
    StreamOptions,
    sampling_params,
)
from ragtune_gateway.schemas.common import Int64, Omitted, PosInt32, ResponseModel, Text, WireModel, check_text

MAX_PROMPT_CHARS = 256_000  # the model's context is far smaller; the generator counts its tokens
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for this endpoint

PromptText = Annotated[str, Field(max_length=MAX_PROMPT_CHARS), AfterValidator(check_text)]


def _refuse_token_arrays(value: object) -> object:
    raise ValueError("token arrays are not supported: send the prompt as text")


def _prompt_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list[int]" if any(isinstance(item, int | list) for item in value) else "list[str]"
    return None


Prompt = Annotated[
    Annotated[PromptText, Tag("str")]
    | Annotated[list[PromptText], Field(min_length=1, max_length=1), Tag("list[str]")]
    | Annotated[list[int] | list[list[int]], AfterValidator(_refuse_token_arrays), Tag("list[int]")],
    Discriminator(
        _prompt_kind,
        custom_error_type="invalid_prompt",
        custom_error_message="must be a string or a list of one string",
    ),
]


class CompletionRequest(WireModel):
    # Unknown OpenAI fields (presence_penalty, logit_bias, ...) are ignored; the ones that change the
    # answer's shape are declared and refused by the service unless default.
    model_config = ConfigDict(extra="ignore")

    model: Text = Field(min_length=1, max_length=256)
    prompt: Prompt = Field(description="a string (or a list holding one); token arrays are not supported")
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: PosInt32 | None = Field(default=None, description=f"unset = {DEFAULT_MAX_TOKENS}, as OpenAI")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: StopSequence | list[StopSequence] | None = None
    seed: Int64 | None = None
    n: int | None = Field(default=None, description="only 1 is supported")
    best_of: int | None = Field(default=None, description="only 1 is supported")
    echo: bool | None = Field(default=None, description="not supported")
    logprobs: int | None = Field(default=None, description="not supported")
    suffix: str | None = Field(default=None, description="not supported")
    user: Text | None = Field(default=None, max_length=256)

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        return value

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]  # type: ignore[return-value]

    def unsupported(self) -> tuple[str, str] | None:
        """The first option set to a value ragtune cannot honour: (param, message)."""
        if self.n not in (None, 1):
            return "n", "Only n=1 is supported."
        if self.best_of not in (None, 1):
            return "best_of", "Only best_of=1 is supported."
        if self.echo:
            return "echo", "echo is not supported."
        if self.logprobs is not None:
            return "logprobs", "logprobs are not supported."
        if self.suffix:
            return "suffix", "suffix (insertion) is not supported."
        return None

    def sampling(self) -> gpb.SamplingParams:
        max_tokens = self.max_tokens or DEFAULT_MAX_TOKENS
        return sampling_params(max_tokens, self.temperature, self.top_p, self.seed, self.stop)


# Downstream field paths -> this request's parameters.
COMPLETION_FIELDS = {
    **SAMPLING_FIELDS,
    "prompt": "prompt",
    "messages": "prompt",
    "adapter": "model",
}


class CompletionChoice(ResponseModel):
    """The official client's ``CompletionChoice``; in a stream ``finish_reason`` is null until the
    last chunk."""

    index: int
    text: str
    finish_reason: FinishReason | None
    logprobs: None = None


class Completion(ResponseModel):
    """The official client's ``Completion``: the whole answer, and each streamed chunk (OpenAI uses
    one shape for both). A stream with ``stream_options.include_usage`` ends with a chunk without
    choices that carries ``usage``."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: Omitted[str] = None
