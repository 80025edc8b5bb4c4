"""``/v1/responses``: the Responses API with its ``file_search`` tool. The request, and the answer
as the official client's ``Response`` (output items: a ``file_search_call`` and a ``message``
whose ``output_text`` carries ``file_citation`` annotations), its stream events, and the input
items page.

Only what ragtune can honour is accepted: ``file_search`` is the one tool, plain text the one
input and output format; a parameter that would change the answer in a way ragtune cannot
(background runs, reasoning, structured output, logprobs, other tools or content types) is a 400
naming it. Parameters that do not change the answer (``user``, ``service_tier``, ...) are ignored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator

from ragtune_gateway.schemas.common import (
    Id,
    JsonObject,
    ListPage,
    Omitted,
    PosInt32,
    ResponseModel,
    Text,
    WireModel,
)
from ragtune_gateway.schemas.metadata import Metadata

MAX_ITEMS = 256
MAX_PARTS = 64
MAX_INPUT_CHARS = 256_000  # every input text together; the model's context is far smaller anyway
INCLUDE_RESULTS = "file_search_call.results"
TEXT_PART_TYPES = ("input_text", "output_text")
ROLES = ("user", "assistant", "system", "developer")


def _supported(value: str, supported: tuple[str, ...], what: str) -> str:
    if value not in supported:
        raise ValueError(f"{what} {value!r} is not supported; only {' and '.join(map(repr, supported))}")
    return value


def _refused(value: Any, why: str) -> Any:
    if value is not None and value is not False:
        raise ValueError(why)
    return value


class InputContentPart(WireModel):
    """A text part of an input message (``input_text``; ``output_text`` in assistant turns given
    back as history)."""

    model_config = ConfigDict(extra="ignore")

    type: str
    text: Text

    @field_validator("type")
    @classmethod
    def _text_only(cls, value: str) -> str:
        return _supported(value, TEXT_PART_TYPES, "content type")


class InputMessage(WireModel):
    """A message item of ``input`` (the SDK's ``EasyInputMessage`` / ``Message``)."""

    model_config = ConfigDict(extra="ignore")

    type: str = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: Annotated[list[InputContentPart], Field(max_length=MAX_PARTS)] | Text

    @field_validator("type")
    @classmethod
    def _messages_only(cls, value: str) -> str:
        return _supported(value, ("message",), "input item type")

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class RankingOptions(WireModel):
    model_config = ConfigDict(extra="ignore")

    ranker: Text | None = Field(default=None, max_length=64)
    score_threshold: float | None = Field(default=None, ge=0, le=1)


class FileSearchToolIn(WireModel):
    """The ``file_search`` tool: searches the tenant's vector stores with the user's last message."""

    model_config = ConfigDict(extra="ignore")

    type: str
    vector_store_ids: list[Id] = Field(min_length=1, max_length=16)
    max_num_results: int | None = Field(default=None, ge=1, le=50)
    filters: JsonObject | None = Field(default=None, description="as vector store search takes them")
    ranking_options: RankingOptions | None = None

    @field_validator("type")
    @classmethod
    def _file_search_only(cls, value: str) -> str:
        return _supported(value, ("file_search",), "tool type")


class ToolChoiceFileSearch(WireModel):
    type: Literal["file_search"]


class TextFormat(WireModel):
    type: Literal["text"]


class TextConfig(WireModel):
    model_config = ConfigDict(extra="ignore")

    format: TextFormat | None = None


class StreamOptions(WireModel):
    model_config = ConfigDict(extra="ignore")


class CreateResponse(WireModel):
    # Unknown fields are ignored, as OpenAI adds them; the ones that change the answer are refused.
    model_config = ConfigDict(extra="ignore")

    model: Text = Field(min_length=1, max_length=256)
    input: Annotated[list[InputMessage], Field(min_length=1, max_length=MAX_ITEMS)] | Text
    instructions: Text | None = None
    tools: list[FileSearchToolIn] | None = Field(default=None, max_length=8, description="one file_search tool")
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceFileSearch | None = None
    include: list[Literal["file_search_call.results"]] | None = Field(default=None, max_length=8)
    previous_response_id: Id | None = None
    store: bool = True
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_output_tokens: PosInt32 | None = Field(
        default=None, description="unset = until the answer ends or the context is full (no 'incomplete' before)"
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    metadata: Metadata | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: PosInt32 | None = None
    truncation: Literal["auto", "disabled"] | None = None
    text: TextConfig | None = None
    user: Text | None = Field(default=None, max_length=256)
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None
    reasoning: Any = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @field_validator("input")
    @classmethod
    def _bounded_input(cls, value: list[InputMessage] | str) -> list[InputMessage] | str:
        total = len(value) if isinstance(value, str) else sum(len(m.text()) for m in value)
        if total > MAX_INPUT_CHARS:
            raise ValueError(f"{total} characters in all, over the limit of {MAX_INPUT_CHARS}")
        return value

    @field_validator("instructions")
    @classmethod
    def _bounded_instructions(cls, value: str | None) -> str | None:
        if value is not None and len(value) > MAX_INPUT_CHARS:
            raise ValueError(f"over the limit of {MAX_INPUT_CHARS} characters")
        return value

    @field_validator("background")
    @classmethod
    def _no_background(cls, value: bool | None) -> bool | None:
        return _refused(value, "background responses are not supported")

    @field_validator("conversation")
    @classmethod
    def _no_conversation(cls, value: Any) -> Any:
        return _refused(value, "conversations are not supported; use previous_response_id")

    @field_validator("prompt")
    @classmethod
    def _no_prompt(cls, value: Any) -> Any:
        return _refused(value, "prompt templates are not supported")

    @field_validator("reasoning")
    @classmethod
    def _no_reasoning(cls, value: Any) -> Any:
        return _refused(value, "reasoning options are not supported")

    @field_validator("top_logprobs")
    @classmethod
    def _no_logprobs(cls, value: int | None) -> int | None:
        return _refused(value or None, "logprobs are not supported")

    def includes_results(self) -> bool:
        return INCLUDE_RESULTS in (self.include or [])

    def searches(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"


# Downstream field paths -> this request's parameters, for the errors the services name a field in.
GENERATE_FIELDS = {
    "sampling.temperature": "temperature",
    "sampling.top_p": "top_p",
    "sampling.max_tokens": "max_output_tokens",
    "messages": "input",
    "prompt": "input",
    "adapter": "model",
}
SEARCH_FIELDS = {
    "filter": "tools[0].filters",
    "collections": "tools[0].vector_store_ids",
    "query": "input",
    "top_k": "tools[0].max_num_results",
}


# Responses: the official client's types (openai.types.responses), field for field where ragtune
# fills them; the optional ones it does not fill are left out.

Status = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]


class FileSearchResult(ResponseModel):
    attributes: dict[str, Any] | None = None
    file_id: str | None = None
    filename: str | None = None
    score: float | None = None
    text: str | None = None
    vector_store_id: Omitted[str] = Field(default=None, description="ragtune: the store it was found in")


class FileSearchCall(ResponseModel):
    """``ResponseFileSearchToolCall``: ``results`` only when the request included them."""

    id: str
    queries: list[str]
    status: Literal["in_progress", "searching", "completed", "incomplete", "failed"]
    type: Literal["file_search_call"] = "file_search_call"
    results: list[FileSearchResult] | None = None


class FileCitation(ResponseModel):
    """``AnnotationFileCitation``: ``index`` is the position in the text where the answer cited the
    file (where its ``[n]`` marker stood; the markers are taken out of the text)."""

    file_id: str
    filename: str
    index: int
    type: Literal["file_citation"] = "file_citation"


class OutputText(ResponseModel):
    annotations: list[FileCitation]
    text: str
    type: Literal["output_text"] = "output_text"
    logprobs: Omitted[list[dict[str, Any]]] = None


class OutputMessage(ResponseModel):
    """``ResponseOutputMessage``."""

    id: str
    content: list[OutputText]
    role: Literal["assistant"] = "assistant"
    status: ItemStatus
    type: Literal["message"] = "message"
    phase: Omitted[Literal["commentary", "final_answer"]] = None


OutputItem = Annotated[FileSearchCall | OutputMessage, Field(discriminator="type")]


class InputText(ResponseModel):
    text: str
    type: Literal["input_text"] = "input_text"


class InputMessageItem(ResponseModel):
    """``ResponseInputMessageItem``: a user, system or developer message of the input."""

    id: str
    content: list[InputText]
    role: Literal["user", "system", "developer"]
    type: Literal["message"] = "message"
    status: ItemStatus | None = None


def _item_kind(value: Any) -> str:
    get = value.get if isinstance(value, dict) else lambda name: getattr(value, name, None)
    if get("type") == "file_search_call":
        return "file_search_call"
    return "output" if get("role") == "assistant" else "input"


# ``ResponseItem``: what a conversation is made of (its input messages, and the output items of the
# responses it continues).
ConversationItem = Annotated[
    Annotated[InputMessageItem, Tag("input")]
    | Annotated[OutputMessage, Tag("output")]
    | Annotated[FileSearchCall, Tag("file_search_call")],
    Discriminator(_item_kind),
]


class FileSearchToolOut(ResponseModel):
    type: Literal["file_search"] = "file_search"
    vector_store_ids: list[str]
    filters: dict[str, Any] | None = None
    max_num_results: int | None = None
    ranking_options: Omitted[dict[str, Any]] = None


class ResponseError(ResponseModel):
    code: str
    message: str


class IncompleteDetails(ResponseModel):
    reason: Literal["max_output_tokens", "content_filter"] | None = None


class InputTokensDetails(ResponseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(ResponseModel):
    reasoning_tokens: int = 0


class ResponseUsage(ResponseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class TextFormatOut(ResponseModel):
    type: Literal["text"] = "text"


class TextConfigOut(ResponseModel):
    format: TextFormatOut = Field(default_factory=TextFormatOut)


class Response(ResponseModel):
    """``openai.types.responses.Response``. ``response.output_text`` in the SDK is the text of its
    message's ``output_text`` parts."""

    id: str
    object: Literal["response"] = "response"
    created_at: float
    status: Status | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool = True
    temperature: float | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, str] = "auto"
    tools: list[FileSearchToolOut]
    top_p: float | None = None
    background: bool = False
    completed_at: float | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    previous_response_id: str | None = None
    store: bool = Field(default=True, description="whether it can be retrieved and continued")
    text: TextConfigOut = Field(default_factory=TextConfigOut)
    truncation: Literal["auto", "disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: Omitted[str] = None
    # the client's other optional fields, which ragtune does not fill: documented, not sent
    access_programs: Omitted[dict[str, Any]] = None
    conversation: Omitted[dict[str, Any]] = None
    image: Omitted[dict[str, Any]] = None
    input_transformations: Omitted[list[dict[str, Any]]] = None
    moderation: Omitted[dict[str, Any]] = None
    prompt: Omitted[dict[str, Any]] = None
    prompt_cache_diagnostics: Omitted[dict[str, Any]] = None
    prompt_cache_key: Omitted[str] = None
    prompt_cache_options: Omitted[dict[str, Any]] = None
    prompt_cache_retention: Omitted[str] = None
    reasoning: Omitted[dict[str, Any]] = None
    safety_identifier: Omitted[str] = None
    service_tier: Omitted[str] = None
    tool_usage: Omitted[dict[str, Any]] = None
    top_logprobs: Omitted[int] = None


class ResponseDeleted(ResponseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


InputItemsPage = ListPage[ConversationItem]


# Stream events (``text/event-stream``, ``event: <type>`` + ``data: <event>``), each numbered by
# ``sequence_number`` from 0, in the order OpenAI sends them.


class ResponseLifecycleEvent(ResponseModel):
    type: Literal[
        "response.created", "response.in_progress", "response.completed", "response.incomplete", "response.failed"
    ]
    response: Response
    sequence_number: int


class OutputItemEvent(ResponseModel):
    type: Literal["response.output_item.added", "response.output_item.done"]
    item: OutputItem
    output_index: int
    sequence_number: int


class FileSearchCallEvent(ResponseModel):
    type: Literal[
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
    ]
    item_id: str
    output_index: int
    sequence_number: int


class ContentPartEvent(ResponseModel):
    type: Literal["response.content_part.added", "response.content_part.done"]
    item_id: str
    output_index: int
    content_index: int
    part: OutputText
    sequence_number: int


class TextDeltaEvent(ResponseModel):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[dict[str, Any]] = Field(default_factory=list)
    sequence_number: int


class TextDoneEvent(ResponseModel):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[dict[str, Any]] = Field(default_factory=list)
    sequence_number: int


class AnnotationAddedEvent(ResponseModel):
    type: Literal["response.output_text.annotation.added"] = "response.output_text.annotation.added"
    item_id: str
    output_index: int
    content_index: int
    annotation_index: int
    annotation: FileCitation | None = None
    sequence_number: int


StreamEvent = (
    ResponseLifecycleEvent
    | OutputItemEvent
    | FileSearchCallEvent
    | ContentPartEvent
    | TextDeltaEvent
    | TextDoneEvent
    | AnnotationAddedEvent
)
