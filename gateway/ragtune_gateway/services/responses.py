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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune_common.logging import request_id_var
from ragtune_common.protoconv import struct_to_dict
from ragtune_gateway import ids
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.repositories import responses as rows
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.aliases import is_alias
from ragtune_gateway.schemas.common import ListPage
from ragtune_gateway.schemas.responses import (
    GENERATE_FIELDS,
    INCLUDE_RESULTS,
    SEARCH_FIELDS,
    ConversationItem,
    CreateResponse,
    FileSearchCall,
    FileSearchResult,
    FileSearchToolOut,
    IncompleteDetails,
    InputMessageItem,
    InputText,
    ItemStatus,
    OutputMessage,
    OutputText,
    Response,
    ResponseDeleted,
    ResponseUsage,
)
from ragtune_gateway.services import retrieval
from ragtune_gateway.services.chat import grounded_messages, select_passages
from ragtune_gateway.services.citations import Source, cite
from ragtune_gateway.services.models import resolve_adapter
from ragtune_gateway.services.vector_stores import search_filter

log = logging.getLogger(__name__)

CONVERSATION = TypeAdapter(list[ConversationItem])


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
    return Source(file_id=hit.document_id, filename=hit.source_name or hit.document_id, text=hit.text)


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


def build_response(turn: Turn, output: list[Any], status: str, **more: Any) -> Response:
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


def finished_response(turn: Turn, message: OutputMessage, final_reason: int, usage: gpb.Usage) -> Response:
    incomplete = final_reason == gpb.FINISH_REASON_LENGTH
    output = [*([turn.search] if turn.search else []), message]
    return build_response(
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


async def save(runtime: GatewayRuntime, tenant: str, turn: Turn, response: Response) -> None:
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
    response = finished_response(turn, message, result.finish_reason, result.usage)
    await save(runtime, tenant, turn, response)
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
