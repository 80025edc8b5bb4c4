"""The Responses API (``/v1/responses``) over the generator, grounded by the ``file_search`` tool.

A request's conversation is the one its ``previous_response_id`` answered (that response's input
items and output), then its own ``input``; ``instructions`` are this request's only (as OpenAI:
they are not carried over). With ``file_search`` the tenant's stores are searched with the last
user message, the passages that fit ``rag_max_context_chars`` go numbered into the system message
(:mod:`ragtune_common.prompts`, as chat completions with ``rag`` do), and the answer's ``[n]``
markers become ``file_citation`` annotations: each marker is taken out of the text and an
annotation of passage n's file is put at the position where it stood (an answer that cites no
passage is annotated at its end with the files of the passages it was given).

Stored responses (``store``, the default) are kept per tenant in ``gateway.responses`` with the
whole conversation they answered, so a chain survives the deletion of an earlier response."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune_common.logging import request_id_var
from ragtune_common.protoconv import struct_to_dict
from ragtune_gateway import ids
from ragtune_gateway.downstream.base import EventStream
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.repositories import responses as rows
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.aliases import is_alias
from ragtune_gateway.schemas.common import ListPage
from ragtune_gateway.schemas.responses import (
    GENERATE_FIELDS,
    INCLUDE_RESULTS,
    SEARCH_FIELDS,
    AnnotationAddedEvent,
    ContentPartEvent,
    ConversationItem,
    CreateResponse,
    FileCitation,
    FileSearchCall,
    FileSearchCallEvent,
    FileSearchResult,
    FileSearchToolOut,
    IncompleteDetails,
    InputMessageItem,
    InputText,
    ItemStatus,
    OutputItemEvent,
    OutputMessage,
    OutputText,
    Response,
    ResponseDeleted,
    ResponseError,
    ResponseLifecycleEvent,
    ResponseUsage,
    StreamEvent,
    TextDeltaEvent,
    TextDoneEvent,
)
from ragtune_gateway.services import retrieval
from ragtune_gateway.services.chat import grounded_messages, select_passages
from ragtune_gateway.services.generation import open_stream
from ragtune_gateway.services.models import resolve_adapter
from ragtune_gateway.services.vector_stores import search_filter

log = logging.getLogger(__name__)

CONVERSATION = TypeAdapter(list[ConversationItem])
MARKER = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")  # [1], [1, 2], with the space before it
OPEN_MARKER = re.compile(r"\s*\[[\d,\s]*$")  # what may still become one, at the end of the text so far
TRAILING_SPACE = re.compile(r"\s+$")
MAX_HELD = 48  # characters held back at most while a marker may be coming


# Citations.


@dataclass(frozen=True)
class Source:
    """The file a passage came from (None for a passage of a document that is not a file)."""

    file_id: str
    filename: str


@dataclass
class Citations:
    """Takes the ``[n]`` markers out of an answer as it comes (whole or in deltas) and records a
    ``file_citation`` of passage n's file at the position where each stood. Markers naming no
    passage given (``[2024]``) are ordinary text. An answer that cites no passage at all (small
    models often do not) gets, when it ends, one annotation per file of the passages it was
    given, at the end of its text: the sources the answer was grounded in."""

    sources: list[Source | None]
    annotations: list[FileCitation] = field(default_factory=list)
    text: str = ""  # the text given out so far, markers taken out
    pending: str = ""  # held back: the start of what may be a marker
    cited: bool = False  # whether the answer has cited a passage

    def feed(self, delta: str) -> tuple[str, list[FileCitation]]:
        """The text that can be given out now, and the annotations it made."""
        self.pending += delta
        out: list[str] = []
        new: list[FileCitation] = []
        pos = 0
        for match in MARKER.finditer(self.pending):
            numbers = [int(n) for n in match.group(1).split(",")]
            if not all(1 <= n <= len(self.sources) for n in numbers):
                continue
            out.append(self.pending[pos : match.start()])
            self.cited = True
            index = len(self.text) + sum(map(len, out))
            new.extend(self._annotate([self.sources[n - 1] for n in numbers], index))
            pos = match.end()
        rest = self.pending[pos:]
        held = OPEN_MARKER.search(rest) or TRAILING_SPACE.search(rest)
        cut = held.start() if held is not None and len(rest) - held.start() <= MAX_HELD else len(rest)
        out.append(rest[:cut])
        self.pending = rest[cut:]
        given = "".join(out)
        self.text += given
        return given, new

    def finish(self) -> tuple[str, list[FileCitation]]:
        """What was still held back (an unfinished marker is text), and the annotations of an
        answer that cited nothing."""
        rest, self.pending = self.pending, ""
        self.text += rest
        return rest, [] if self.cited else self._annotate(self.sources, len(self.text))

    def _annotate(self, sources: list[Source | None], index: int) -> list[FileCitation]:
        new = []
        for source in sources:
            if source is None:
                continue
            annotation = FileCitation(file_id=source.file_id, filename=source.filename, index=index)
            if annotation not in self.annotations:
                self.annotations.append(annotation)
                new.append(annotation)
        return new


def cite(text: str, sources: list[Source | None]) -> tuple[str, list[FileCitation]]:
    """A whole answer without its markers, and its annotations."""
    citations = Citations(sources)
    citations.feed(text)
    citations.finish()
    return citations.text, citations.annotations


# Preparing a turn.


@dataclass(frozen=True)
class Turn:
    """A request ready for the generator: what to send, the conversation it answers, the file
    search it made (with all its results: what is stored), and the passages' files."""

    id: str
    created_at: int
    body: CreateResponse
    model: str
    request: gpb.GenerateRequest
    conversation: list[Any]
    search: FileSearchCall | None
    sources: list[Source | None]


def _input_items(body: CreateResponse) -> list[InputMessageItem | OutputMessage]:
    if isinstance(body.input, str):
        text = [InputText(text=body.input)]
        return [InputMessageItem(id=ids.new_id(ids.RESPONSE_MESSAGE), role="user", content=text, status="completed")]
    items: list[InputMessageItem | OutputMessage] = []
    for message in body.input:
        item_id = ids.new_id(ids.RESPONSE_MESSAGE)
        if message.role == "assistant":
            content = [OutputText(text=message.text(), annotations=[])]
            items.append(OutputMessage(id=item_id, content=content, status="completed"))
        else:
            items.append(
                InputMessageItem(
                    id=item_id, role=message.role, content=[InputText(text=message.text())], status="completed"
                )
            )
    return items


def _messages(instructions: str | None, conversation: list[Any]) -> list[gpb.ChatMessage]:
    messages = [gpb.ChatMessage(role="system", content=instructions)] if instructions else []
    for item in conversation:
        if isinstance(item, FileSearchCall):
            continue
        role = "system" if item.role == "developer" else item.role
        messages.append(gpb.ChatMessage(role=role, content="".join(part.text for part in item.content)))
    return messages


def _query(messages: list[gpb.ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user" and message.content.strip():
            return message.content
    raise ApiError(400, "file_search needs a user message to search with.", param="input", code="invalid_value")


def check_tools(body: CreateResponse) -> None:
    """One ``file_search`` tool at most, and a ``tool_choice`` that the tools can honour."""
    if body.tools and len(body.tools) > 1:
        raise ApiError(400, "Only one file_search tool may be given.", param="tools[1]", code="invalid_value")
    if body.tool_choice is not None and not isinstance(body.tool_choice, str) and not body.tools:
        raise ApiError(400, "tool_choice names file_search, which is not in tools.", param="tool_choice")
    if body.tool_choice == "required" and not body.tools:
        raise ApiError(400, "tool_choice 'required' needs a tool.", param="tool_choice")


def _result(hit: rpb.SearchHit) -> FileSearchResult:
    return FileSearchResult(
        attributes=struct_to_dict(hit.metadata, "metadata") if hit.HasField("metadata") else {},
        file_id=hit.document_id,
        filename=hit.source_name or None,
        score=hit.score,
        text=hit.text,
        vector_store_id=hit.collection,
    )


def _source(hit: rpb.SearchHit) -> Source | None:
    if not hit.document_id.startswith(ids.FILE):
        return None
    return Source(file_id=hit.document_id, filename=hit.source_name or hit.document_id)


async def prepare(runtime: GatewayRuntime, tenant: str, body: CreateResponse) -> Turn:
    """Checks the request, reads the conversation it continues, resolves its model and, with
    ``file_search``, searches and grounds it."""
    check_tools(body)
    history: list[Any] = []
    if body.previous_response_id:
        previous = await rows.get(runtime.pool, tenant, body.previous_response_id)
        if previous is None:
            raise not_found("response", body.previous_response_id, "previous_response_id")
        history = CONVERSATION.validate_python([*previous.input_items, *previous.response["output"]])
    adapter = await resolve_adapter(runtime, tenant, body.model)
    conversation = [*history, *_input_items(body)]
    messages = _messages(body.instructions, conversation)
    if not any(m.content.strip() for m in messages if m.role != "system"):
        raise ApiError(400, "The input has no text.", param="input", code="invalid_value")
    search: FileSearchCall | None = None
    sources: list[Source | None] = []
    if body.tools and body.searches():
        tool = body.tools[0]
        query = _query(messages)
        filters = search_filter(tool.filters, SEARCH_FIELDS["filter"]) if tool.filters else None
        hits = await retrieval.search(
            runtime,
            tenant,
            tool.vector_store_ids,
            query,
            tool.max_num_results or runtime.settings.rag_default_top_k,
            "hybrid",
            filters,
            SEARCH_FIELDS,
        )
        threshold = tool.ranking_options.score_threshold if tool.ranking_options else None
        passages = select_passages(hits, runtime.settings.rag_max_context_chars, threshold)
        messages = grounded_messages(messages, passages)
        sources = [_source(hit) for hit in passages]
        results = [_result(hit) for hit in passages]
        search = FileSearchCall(
            id=ids.new_id(ids.FILE_SEARCH_CALL), queries=[query], status="completed", results=results
        )
    sampling = gpb.SamplingParams(max_tokens=body.max_output_tokens or 0)
    if body.temperature is not None:
        sampling.temperature = body.temperature
    if body.top_p is not None:
        sampling.top_p = body.top_p
    request = gpb.GenerateRequest(
        messages=messages, sampling=sampling, adapter=adapter, request_id=request_id_var.get(), tenant=tenant
    )
    # an alias answers under the name of the adapter that holds it (as OpenAI names the snapshot)
    model = adapter if adapter and is_alias(body.model) else body.model
    return Turn(ids.new_id(ids.RESPONSE), int(time.time()), body, model, request, conversation, search, sources)


# The answer.


def _response(turn: Turn, output: list[Any], status: str, **more: Any) -> Response:
    body = turn.body
    tools = [
        FileSearchToolOut(
            vector_store_ids=t.vector_store_ids,
            filters=t.filters,
            max_num_results=t.max_num_results,
            ranking_options=t.ranking_options.model_dump(exclude_none=True) if t.ranking_options else None,
        )
        for t in body.tools or []
    ]
    choice = body.tool_choice
    return Response(
        id=turn.id,
        created_at=turn.created_at,
        status=status,  # type: ignore[arg-type]
        instructions=body.instructions,
        metadata=body.metadata or {},
        model=turn.model,
        output=output,
        parallel_tool_calls=True if body.parallel_tool_calls is None else body.parallel_tool_calls,
        temperature=body.temperature,
        tool_choice=choice.model_dump() if choice is not None and not isinstance(choice, str) else (choice or "auto"),
        tools=tools,
        top_p=body.top_p,
        max_output_tokens=body.max_output_tokens,
        max_tool_calls=body.max_tool_calls,
        previous_response_id=body.previous_response_id,
        store=body.store,
        truncation=body.truncation or "disabled",
        user=body.user,
        **more,
    )


def _usage(usage: gpb.Usage) -> ResponseUsage:
    return ResponseUsage(
        input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens, total_tokens=usage.total_tokens
    )


def _finished(turn: Turn, message: OutputMessage, final_reason: int, usage: gpb.Usage) -> Response:
    incomplete = final_reason == gpb.FINISH_REASON_LENGTH
    output = [*([turn.search] if turn.search else []), message]
    return _response(
        turn,
        output,
        "incomplete" if incomplete else "completed",
        incomplete_details=IncompleteDetails(reason="max_output_tokens") if incomplete else None,
        completed_at=None if incomplete else time.time(),
        usage=_usage(usage),
    )


def shown(response: Response, include: Sequence[str] | None) -> Response:
    """The response as the client sees it: file search results only when it asked for them."""
    if INCLUDE_RESULTS in (include or []):
        return response
    return response.model_copy(update={"output": _without_results(response.output)})


def _without_results(items: list[Any]) -> list[Any]:
    return [i.model_copy(update={"results": None}) if isinstance(i, FileSearchCall) else i for i in items]


async def _save(runtime: GatewayRuntime, tenant: str, turn: Turn, response: Response) -> None:
    if turn.body.store:
        conversation = [item.model_dump(mode="json") for item in turn.conversation]
        await rows.insert(runtime.pool, tenant, response.model_dump(mode="json"), conversation)


async def create(runtime: GatewayRuntime, tenant: str, body: CreateResponse) -> Response:
    """The whole answer (stored unless ``store`` is false)."""
    turn = await prepare(runtime, tenant, body)
    result = await runtime.downstream.generator.complete(turn.request, fields=GENERATE_FIELDS)
    runtime.metrics.count_tokens(turn.model, result.usage.prompt_tokens, result.usage.completion_tokens)
    text, annotations = cite(result.text, turn.sources)
    status: ItemStatus = "incomplete" if result.finish_reason == gpb.FINISH_REASON_LENGTH else "completed"
    message = OutputMessage(
        id=ids.new_id(ids.RESPONSE_MESSAGE), content=[OutputText(text=text, annotations=annotations)], status=status
    )
    response = _finished(turn, message, result.finish_reason, result.usage)
    await _save(runtime, tenant, turn, response)
    return shown(response, body.include)


async def get(runtime: GatewayRuntime, tenant: str, response_id: str, include: list[str]) -> Response:
    row = await rows.get(runtime.pool, tenant, response_id)
    if row is None:
        raise not_found("response", response_id)
    return shown(Response.model_validate(row.response), include)


async def delete(runtime: GatewayRuntime, tenant: str, response_id: str) -> ResponseDeleted:
    if not await rows.delete(runtime.pool, tenant, response_id):
        raise not_found("response", response_id)
    return ResponseDeleted(id=response_id)


async def list_input_items(
    runtime: GatewayRuntime, tenant: str, response_id: str, after: str, limit: int, order: str, include: list[str]
) -> ListPage[Any]:
    """The conversation the response answered, newest first by default (as OpenAI)."""
    row = await rows.get(runtime.pool, tenant, response_id)
    if row is None:
        raise not_found("response", response_id)
    items = CONVERSATION.validate_python(row.input_items)
    if INCLUDE_RESULTS not in include:
        items = _without_results(items)
    if order == "desc":
        items.reverse()
    start = 0
    if after:
        positions = [i for i, item in enumerate(items) if item.id == after]
        if not positions:
            raise ApiError(400, f"No input item '{after}' in this response.", param="after", code="invalid_value")
        start = positions[0] + 1
    page = items[start : start + limit]
    return ListPage.of(page, has_more=start + limit < len(items))


# Streaming.


def _sse(event: StreamEvent) -> bytes:
    return f"event: {event.type}\ndata: {event.model_dump_json()}\n\n".encode()


async def stream(
    runtime: GatewayRuntime, tenant: str, body: CreateResponse, key_hash: str
) -> tuple[AsyncIterator[bytes], Callable[[], None]]:
    """The SSE byte stream and the release of its stream slot (taken here: 429 beyond
    ``max_streams_per_key``). The search and the generator's first event happen before the
    stream starts, so a refused request is an ordinary HTTP error; a failure after it ends the
    stream with ``response.failed``."""
    turn = await prepare(runtime, tenant, body)
    first, events, release = await open_stream(runtime, key_hash, turn.request, GENERATE_FIELDS)
    return _events(runtime, tenant, turn, first, events), release


async def _events(
    runtime: GatewayRuntime,
    tenant: str,
    turn: Turn,
    first: gpb.GenerateResponse,
    events: EventStream[gpb.GenerateResponse],
) -> AsyncIterator[bytes]:
    """``response.created``, ``response.in_progress``, the file search call's item and events, the
    message's item, part, text deltas (and annotations as their markers pass), then
    ``response.completed`` (``response.incomplete`` at ``max_output_tokens``)."""
    include = turn.body.include
    sequence = iter(range(1 << 62))
    started = _response(turn, [], "in_progress")
    yield _sse(ResponseLifecycleEvent(type="response.created", response=started, sequence_number=next(sequence)))
    yield _sse(ResponseLifecycleEvent(type="response.in_progress", response=started, sequence_number=next(sequence)))
    index = 0
    if turn.search is not None:
        call = turn.search
        yield _sse(
            OutputItemEvent(
                type="response.output_item.added",
                item=call.model_copy(update={"status": "in_progress", "results": None}),
                output_index=index,
                sequence_number=next(sequence),
            )
        )
        for kind in ("in_progress", "searching", "completed"):
            yield _sse(
                FileSearchCallEvent(
                    type=f"response.file_search_call.{kind}",  # type: ignore[arg-type]
                    item_id=call.id,
                    output_index=index,
                    sequence_number=next(sequence),
                )
            )
        done = call if INCLUDE_RESULTS in (include or []) else call.model_copy(update={"results": None})
        yield _sse(
            OutputItemEvent(
                type="response.output_item.done", item=done, output_index=index, sequence_number=next(sequence)
            )
        )
        index += 1
    message_id = ids.new_id(ids.RESPONSE_MESSAGE)
    empty = OutputText(text="", annotations=[])
    yield _sse(
        OutputItemEvent(
            type="response.output_item.added",
            item=OutputMessage(id=message_id, content=[], status="in_progress"),
            output_index=index,
            sequence_number=next(sequence),
        )
    )
    yield _sse(
        ContentPartEvent(
            type="response.content_part.added",
            part=empty,
            sequence_number=next(sequence),
            item_id=message_id,
            output_index=index,
            content_index=0,
        )
    )
    citations = Citations(turn.sources)

    def text_events(given: str, annotations: list[FileCitation]) -> list[bytes]:
        out = (
            [
                _sse(
                    TextDeltaEvent(
                        delta=given,
                        sequence_number=next(sequence),
                        item_id=message_id,
                        output_index=index,
                        content_index=0,
                    )
                )
            ]
            if given
            else []
        )
        for annotation in annotations:
            position = citations.annotations.index(annotation)
            out.append(
                _sse(
                    AnnotationAddedEvent(
                        annotation=annotation,
                        annotation_index=position,
                        sequence_number=next(sequence),
                        item_id=message_id,
                        output_index=index,
                        content_index=0,
                    )
                )
            )
        return out

    event: gpb.GenerateResponse | None = first
    final: gpb.Completion | None = None
    try:
        while event is not None:
            kind = event.WhichOneof("event")
            if kind == "delta" and event.delta:
                for chunk in text_events(*citations.feed(event.delta)):
                    yield chunk
            elif kind == "final":
                final = event.final
            event = await anext(events, None)
    except ApiError as error:
        log.warning("response stream ended by the generator: %s", error.code)
        failed = _response(
            turn, [], "failed", error=ResponseError(code=error.code or "server_error", message=error.message)
        )
        yield _sse(ResponseLifecycleEvent(type="response.failed", response=failed, sequence_number=next(sequence)))
        return
    finally:
        events.close()  # the client went away, or we are done: nothing more to generate
    for chunk in text_events(*citations.finish()):
        yield chunk
    part = OutputText(text=citations.text, annotations=citations.annotations)
    yield _sse(
        TextDoneEvent(
            text=citations.text, sequence_number=next(sequence), item_id=message_id, output_index=index, content_index=0
        )
    )
    yield _sse(
        ContentPartEvent(
            type="response.content_part.done",
            part=part,
            sequence_number=next(sequence),
            item_id=message_id,
            output_index=index,
            content_index=0,
        )
    )
    reason = final.finish_reason if final is not None else gpb.FINISH_REASON_STOP
    usage = final.usage if final is not None else gpb.Usage()
    runtime.metrics.count_tokens(turn.model, usage.prompt_tokens, usage.completion_tokens)
    status: ItemStatus = "incomplete" if reason == gpb.FINISH_REASON_LENGTH else "completed"
    message = OutputMessage(id=message_id, content=[part], status=status)
    yield _sse(
        OutputItemEvent(
            type="response.output_item.done", item=message, output_index=index, sequence_number=next(sequence)
        )
    )
    response = _finished(turn, message, reason, usage)
    await _save(runtime, tenant, turn, response)
    kind = "response.incomplete" if response.status == "incomplete" else "response.completed"
    yield _sse(
        ResponseLifecycleEvent(type=kind, response=shown(response, include), sequence_number=next(sequence))  # type: ignore[arg-type]
    )
