"""Chat completions over the generator, in the OpenAI response and SSE chunk shapes."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune_gateway.auth import metadata
from ragtune_gateway.errors import ApiError, from_rpc_error, rpc_errors
from ragtune_gateway.runtime import GatewayRuntime

log = logging.getLogger(__name__)

FINISH_REASONS = {gpb.FINISH_REASON_STOP: "stop", gpb.FINISH_REASON_LENGTH: "length", gpb.FINISH_REASON_ABORTED: "stop"}


def _params() -> dict[str, str]:
    # sampling.temperature -> temperature, and so on: the request's own field names.
    return {
        "sampling.temperature": "temperature",
        "sampling.top_p": "top_p",
        "sampling.max_tokens": "max_tokens",
        "sampling.stop": "stop",
        "sampling.seed": "seed",
        "messages": "messages",
        "prompt": "messages",
        "adapter": "model",
    }


def _usage(usage: gpb.Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


async def complete(
    runtime: GatewayRuntime, request: gpb.GenerateRequest, model: str, citations: list[dict[str, Any]] | None
) -> dict[str, Any]:
    with rpc_errors("generator", params=_params()):
        result = await runtime.downstream.generator.GenerateUnary(
            request, timeout=runtime.settings.generate_timeout_s, metadata=metadata()
        )
    runtime.metrics.count_tokens(model, result.usage.prompt_tokens, result.usage.completion_tokens)
    body: dict[str, Any] = {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": FINISH_REASONS.get(result.finish_reason, "stop"),
                "logprobs": None,
            }
        ],
        "usage": _usage(result.usage),
    }
    if citations is not None:
        body["citations"] = citations
    return body


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


async def stream(
    runtime: GatewayRuntime,
    request: gpb.GenerateRequest,
    model: str,
    citations: list[dict[str, Any]] | None,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The SSE byte stream. The first event is awaited here, so that a refused request (bad
    sampling, unknown adapter, overload) is an ordinary HTTP error rather than a broken stream.
    The first chunk carries the assistant role and, with RAG, the ``citations``."""
    call = runtime.downstream.generator.Generate(
        request, timeout=runtime.settings.generate_timeout_s, metadata=metadata()
    )
    events = call.__aiter__()
    with rpc_errors("generator", params=_params()):
        try:
            first: gpb.GenerateResponse | None = await events.__anext__()
        except StopAsyncIteration:
            first = None
    base = {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        body = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        if include_usage:
            body.setdefault("usage", None)
        return _sse(body)

    async def generate() -> AsyncIterator[bytes]:
        opening: dict[str, Any] = {"citations": citations} if citations is not None else {}
        yield chunk({"role": "assistant", "content": ""}, **opening)
        event = first
        try:
            while event is not None:
                kind = event.WhichOneof("event")
                if kind == "delta" and event.delta:
                    yield chunk({"content": event.delta})
                elif kind == "final":
                    final = event.final
                    runtime.metrics.count_tokens(model, final.usage.prompt_tokens, final.usage.completion_tokens)
                    yield chunk({}, FINISH_REASONS.get(final.finish_reason, "stop"))
                    if include_usage:
                        yield _sse({**base, "choices": [], "usage": _usage(final.usage)})
                try:
                    event = await events.__anext__()
                except StopAsyncIteration:
                    event = None
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc, "generator")
            log.warning("stream ended by the generator: %s", exc.code())
            yield _sse(error.body())
            return
        finally:
            call.cancel()  # the client went away, or we are done: nothing more to generate
        yield _sse("[DONE]")

    if first is None:
        raise ApiError(502, "The generator ended the stream without an answer.", code="bad_gateway")
    return generate()
