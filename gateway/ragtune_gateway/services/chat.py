"""Chat completions over the generator, optionally grounded in the caller's vector stores (the
``rag`` extension): answered whole as a :class:`ChatCompletion`, or streamed as SSE
``ChatCompletionChunk`` events.

A grounded request searches the tenant's stores with the last user message, keeps the best
passages that fit ``rag_max_context_chars``, puts them numbered into the system message
(:mod:`ragtune_common.prompts`, the text RAFT adapters are trained on) and returns them as
``citations``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import psycopg

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune_common.logging import request_id_var
from ragtune_common.prompts import grounded_system_prompt
from ragtune_common.protoconv import struct_to_dict
from ragtune_gateway import ids
from ragtune_gateway.downstream.base import EventStream
from ragtune_gateway.errors import ApiError, database_unavailable
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.aliases import is_alias
from ragtune_gateway.schemas.chat import (
    GENERATE_FIELDS,
    RAG_SEARCH_FIELDS,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionRequest,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    Citation,
    CompletionUsage,
    FinishReason,
)
from ragtune_gateway.services import retrieval, stored_completions
from ragtune_gateway.services.generation import open_stream, sse
from ragtune_gateway.services.models import resolve_adapter

log = logging.getLogger(__name__)

FINISH_REASONS: dict[int, FinishReason] = {
    gpb.FINISH_REASON_STOP: "stop",
    gpb.FINISH_REASON_LENGTH: "length",
    gpb.FINISH_REASON_ABORTED: "stop",
}


@dataclass(frozen=True)
class Prepared:
    """A request ready for the generator: what to send, the name the answer goes under, and the
    citations of a grounded one."""

    request: gpb.GenerateRequest
    model: str
    citations: list[Citation] | None


def citation(index: int, hit: rpb.SearchHit) -> Citation:
    """One passage as the client sees it: ``text == document_text[start_offset:end_offset]``."""
    return Citation(
        index=index,
        document_id=hit.document_id,
        chunk_id=hit.chunk_id,
        vector_store_id=hit.collection,
        file_id=hit.document_id if hit.document_id.startswith(ids.FILE) else None,
        filename=hit.source_name or None,
        start_offset=hit.start_offset,
        end_offset=hit.end_offset,
        text=hit.text,
        score=hit.score,
        attributes=struct_to_dict(hit.metadata, "metadata") if hit.HasField("metadata") else {},
    )


def select_passages(hits: list[rpb.SearchHit], max_chars: int, threshold: float | None) -> list[rpb.SearchHit]:
    """Best hits first while they fit in ``max_chars`` (always at least one)."""
    chosen: list[rpb.SearchHit] = []
    used = 0
    for hit in hits:
        if threshold is not None and hit.score < threshold:
            continue
        if chosen and used + len(hit.text) > max_chars:
            break
        chosen.append(hit)
        used += len(hit.text)
    return chosen


def grounded_messages(messages: list[gpb.ChatMessage], passages: list[rpb.SearchHit]) -> list[gpb.ChatMessage]:
    """The conversation with the numbered passages added to (or as) the system message."""
    system = [m.content for m in messages if m.role == "system"]
    content = grounded_system_prompt(system, [(hit.source_name or hit.document_id, hit.text) for hit in passages])
    return [gpb.ChatMessage(role="system", content=content), *(m for m in messages if m.role != "system")]


def last_user_text(messages: list[gpb.ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user" and message.content.strip():
            return message.content
    raise ApiError(400, "RAG needs a user message to search with.", param="messages", code="invalid_value")


def _messages(body: ChatCompletionRequest) -> list[gpb.ChatMessage]:
    return [
        gpb.ChatMessage(role="system" if m.role == "developer" else m.role, content=m.text()) for m in body.messages
    ]


async def prepare(runtime: GatewayRuntime, tenant: str, body: ChatCompletionRequest) -> Prepared:
    """Checks the request, resolves its model for the tenant and, with ``rag``, grounds it."""
    if body.tools:
        raise ApiError(400, "Tools are not supported.", param="tools", code="unsupported_parameter")
    adapter = await resolve_adapter(runtime, tenant, body.model)
    messages = _messages(body)
    citations: list[Citation] | None = None
    if body.rag is not None:
        retrieval.check_store_ids(body.rag.vector_store_ids, RAG_SEARCH_FIELDS["collections"])
        hits = await retrieval.search(
            runtime,
            tenant,
            body.rag.vector_store_ids,
            last_user_text(messages),
            body.rag.top_k or runtime.settings.rag_default_top_k,
            body.rag.mode,
            body.rag.filter,
            RAG_SEARCH_FIELDS,
        )
        passages = select_passages(hits, runtime.settings.rag_max_context_chars, body.rag.score_threshold)
        messages = grounded_messages(messages, passages)
        citations = [citation(i, hit) for i, hit in enumerate(passages, 1)]
    request = gpb.GenerateRequest(
        messages=messages, sampling=body.sampling(), adapter=adapter, request_id=request_id_var.get(), tenant=tenant
    )
    # an alias answers under the name of the adapter that holds it (as OpenAI names the snapshot)
    shown = adapter if adapter and is_alias(body.model) else body.model
    return Prepared(request, shown, citations)


def _usage(usage: gpb.Usage) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, total_tokens=usage.total_tokens
    )


async def complete(runtime: GatewayRuntime, tenant: str, body: ChatCompletionRequest) -> ChatCompletion:
    """The whole answer."""
    prepared = await prepare(runtime, tenant, body)
    result = await runtime.downstream.generator.complete(prepared.request, fields=GENERATE_FIELDS)
    runtime.metrics.count_tokens(prepared.model, result.usage.prompt_tokens, result.usage.completion_tokens)
    completion = _completion(
        ids.new_id(ids.CHAT_COMPLETION), int(time.time()), prepared, body, result.text, result.finish_reason
    )
    completion.usage = _usage(result.usage)
    await stored_completions.record(runtime, tenant, body, prepared.request.adapter, completion)
    return completion


def _completion(
    completion_id: str, created: int, prepared: Prepared, body: ChatCompletionRequest, text: str, finish: int
) -> ChatCompletion:
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=prepared.model,
        choices=[
            Choice(
                index=0,
                message=ChatCompletionMessage(content=text),
                finish_reason=FINISH_REASONS.get(finish, "stop"),
            )
        ],
        citations=prepared.citations,
        metadata=body.metadata,
    )


async def stream(
    runtime: GatewayRuntime, tenant: str, body: ChatCompletionRequest, key_hash: str
) -> tuple[AsyncIterator[bytes], Callable[[], None]]:
    """The SSE byte stream and the release of its stream slot (taken here: 429 beyond
    ``max_streams_per_key``). The generator's first event is awaited here, so that a refused
    request (bad sampling, unknown adapter, overload) is an ordinary HTTP error rather than a
    broken stream; a failure after it ends the stream with an ``{"error": ...}`` event. The first
    chunk carries the assistant role and, with RAG, the ``citations``."""
    prepared = await prepare(runtime, tenant, body)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    first, events, release = await open_stream(runtime, key_hash, prepared.request, GENERATE_FIELDS)
    answer = Answer(runtime, tenant, body, prepared, ids.new_id(ids.CHAT_COMPLETION), int(time.time()))
    return _chunks(answer, first, events, include_usage), release


@dataclass
class Answer:
    """A streamed answer: what its chunks are made of, and its text so far (stored at its end)."""

    runtime: GatewayRuntime
    tenant: str
    body: ChatCompletionRequest
    prepared: Prepared
    id: str
    created: int
    text: str = ""

    async def store(self, final: gpb.Completion) -> None:
        completion = _completion(self.id, self.created, self.prepared, self.body, self.text, final.finish_reason)
        completion.usage = _usage(final.usage)
        try:
            await stored_completions.record(
                self.runtime, self.tenant, self.body, self.prepared.request.adapter, completion
            )
        except psycopg.OperationalError as exc:  # the answer is sent; the client learns it was not kept
            log.warning("stored completion %s not written: %s", self.id, exc)
            raise database_unavailable() from None


async def _chunks(
    answer: Answer,
    first: gpb.GenerateResponse,
    events: EventStream[gpb.GenerateResponse],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The chunks of ``answer``; a stored one is written once its last token is in, before
    ``[DONE]`` (a stream cut short is not stored)."""
    runtime, prepared = answer.runtime, answer.prepared
    completion_id, created, model = answer.id, answer.created, prepared.model
    leave_out = None if include_usage else {"usage"}

    def chunk(
        choices: list[ChunkChoice], usage: CompletionUsage | None = None, citations: list[Citation] | None = None
    ) -> bytes:
        body = ChatCompletionChunk(
            id=completion_id, created=created, model=model, choices=choices, citations=citations, usage=usage
        )
        return sse(body.model_dump_json(exclude=leave_out))

    def delta(delta: ChoiceDelta, finish: FinishReason | None = None) -> bytes:
        return chunk([ChunkChoice(index=0, delta=delta, finish_reason=finish)])

    yield chunk([ChunkChoice(index=0, delta=ChoiceDelta(role="assistant", content=""))], citations=prepared.citations)
    event: gpb.GenerateResponse | None = first
    try:
        while event is not None:
            kind = event.WhichOneof("event")
            if kind == "delta" and event.delta:
                answer.text += event.delta
                yield delta(ChoiceDelta(content=event.delta))
            elif kind == "final":
                final = event.final
                runtime.metrics.count_tokens(model, final.usage.prompt_tokens, final.usage.completion_tokens)
                await answer.store(final)
                yield delta(ChoiceDelta(), FINISH_REASONS.get(final.finish_reason, "stop"))
                if include_usage:
                    yield chunk([], usage=_usage(final.usage))
            event = await anext(events, None)
    except ApiError as error:
        log.warning("stream ended by the generator: %s", error.code)
        yield sse(json.dumps(error.body(), separators=(",", ":")))
        return
    finally:
        events.close()  # the client went away, or we are done: nothing more to generate
    yield sse("[DONE]")
