"""``POST /v1/responses`` with ``stream``: the Responses event sequence (``response.created``, the
file search call's item and events, the message's item, part, text deltas and annotations, then
``response.completed``, ``response.incomplete`` or ``response.failed``), each numbered."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune_gateway import ids
from ragtune_gateway.downstream.base import EventStream
from ragtune_gateway.errors import ApiError
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.responses import (
    GENERATE_FIELDS,
    INCLUDE_RESULTS,
    AnnotationAddedEvent,
    ContentPartEvent,
    CreateResponse,
    FileCitation,
    FileSearchCallEvent,
    ItemStatus,
    OutputItemEvent,
    OutputMessage,
    OutputText,
    ResponseError,
    ResponseLifecycleEvent,
    StreamEvent,
    TextDeltaEvent,
    TextDoneEvent,
)
from ragtune_gateway.services.citations import Citations
from ragtune_gateway.services.generation import open_stream
from ragtune_gateway.services.responses import Turn, build_response, finished_response, prepare, save, shown

log = logging.getLogger(__name__)


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
    started = build_response(turn, [], "in_progress")
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
        failed = build_response(
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
    response = finished_response(turn, message, reason, usage)
    await save(runtime, tenant, turn, response)
    kind = "response.incomplete" if response.status == "incomplete" else "response.completed"
    yield _sse(
        ResponseLifecycleEvent(type=kind, response=shown(response, include), sequence_number=next(sequence))  # type: ignore[arg-type]
    )
