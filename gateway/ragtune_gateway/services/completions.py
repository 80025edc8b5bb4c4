"""Legacy text completions: the raw prompt (no chat template) continued by the generator, under the
base model, one of the tenant's adapters or an alias; answered whole, or streamed as SSE
``text_completion`` chunks with the same stream slots per key as chat (429 beyond
``max_streams_per_key``)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune_common.logging import request_id_var
from ragtune_gateway import ids
from ragtune_gateway.downstream.base import EventStream
from ragtune_gateway.errors import ApiError
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.aliases import is_alias
from ragtune_gateway.schemas.chat import CompletionUsage
from ragtune_gateway.schemas.completions import COMPLETION_FIELDS, Completion, CompletionChoice, CompletionRequest
from ragtune_gateway.services.chat import FINISH_REASONS
from ragtune_gateway.services.generation import open_stream, sse
from ragtune_gateway.services.models import resolve_adapter

log = logging.getLogger(__name__)


async def prepare(runtime: GatewayRuntime, tenant: str, body: CompletionRequest) -> tuple[gpb.GenerateRequest, str]:
    """The generator request and the model name the answer goes under (an alias answers under
    the adapter that holds it, as chat does)."""
    refused = body.unsupported()
    if refused is not None:
        param, message = refused
        raise ApiError(400, message, param=param, code="unsupported_parameter")
    if not body.prompt_text():
        raise ApiError(400, "The prompt must not be empty.", param="prompt", code="invalid_value")
    adapter = await resolve_adapter(runtime, tenant, body.model)
    request = gpb.GenerateRequest(
        prompt=body.prompt_text(),
        sampling=body.sampling(),
        adapter=adapter,
        request_id=request_id_var.get(),
        tenant=tenant,
    )
    return request, adapter if adapter and is_alias(body.model) else body.model


def _usage(usage: gpb.Usage) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, total_tokens=usage.total_tokens
    )


async def complete(runtime: GatewayRuntime, tenant: str, body: CompletionRequest) -> Completion:
    request, model = await prepare(runtime, tenant, body)
    result = await runtime.downstream.generator.complete(request, fields=COMPLETION_FIELDS)
    runtime.metrics.count_tokens(model, result.usage.prompt_tokens, result.usage.completion_tokens)
    choice = CompletionChoice(index=0, text=result.text, finish_reason=FINISH_REASONS.get(result.finish_reason, "stop"))
    return Completion(
        id=ids.new_id(ids.COMPLETION),
        created=int(time.time()),
        model=model,
        choices=[choice],
        usage=_usage(result.usage),
    )


async def stream(
    runtime: GatewayRuntime, tenant: str, body: CompletionRequest, key_hash: str
) -> tuple[AsyncIterator[bytes], Callable[[], None]]:
    """The SSE byte stream and the release of its stream slot. The generator's first event is
    awaited here, so a refused request is an ordinary HTTP error; a failure after it ends the
    stream with an ``{"error": ...}`` event."""
    request, model = await prepare(runtime, tenant, body)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    first, events, release = await open_stream(runtime, key_hash, request, COMPLETION_FIELDS)
    return _chunks(runtime, model, first, events, include_usage), release


async def _chunks(
    runtime: GatewayRuntime,
    model: str,
    first: gpb.GenerateResponse,
    events: EventStream[gpb.GenerateResponse],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    completion_id, created = ids.new_id(ids.COMPLETION), int(time.time())
    leave_out = None if include_usage else {"usage"}

    def chunk(choices: list[CompletionChoice], usage: CompletionUsage | None = None) -> bytes:
        body = Completion(id=completion_id, created=created, model=model, choices=choices, usage=usage)
        return sse(body.model_dump_json(exclude=leave_out))

    event: gpb.GenerateResponse | None = first
    try:
        while event is not None:
            kind = event.WhichOneof("event")
            if kind == "delta" and event.delta:
                yield chunk([CompletionChoice(index=0, text=event.delta, finish_reason=None)])
            elif kind == "final":
                final = event.final
                runtime.metrics.count_tokens(model, final.usage.prompt_tokens, final.usage.completion_tokens)
                finish = FINISH_REASONS.get(final.finish_reason, "stop")
                yield chunk([CompletionChoice(index=0, text="", finish_reason=finish)])
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
