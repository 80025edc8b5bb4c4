"""What every streamed generation shares (chat completions, legacy completions, responses): the
key's stream slot, and the generator's stream opened with its first event already in hand, so a
refused request (bad sampling, unknown adapter, overload, no slot) is an ordinary HTTP error
rather than a broken stream."""

from __future__ import annotations

from collections.abc import Callable

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune_gateway.downstream.base import EventStream
from ragtune_gateway.downstream.errors import Fields
from ragtune_gateway.errors import ApiError
from ragtune_gateway.runtime import GatewayRuntime


def sse(data: str) -> bytes:
    """One server-sent event carrying ``data``."""
    return f"data: {data}\n\n".encode()


async def open_stream(
    runtime: GatewayRuntime, key_hash: str, request: gpb.GenerateRequest, fields: Fields
) -> tuple[gpb.GenerateResponse, EventStream[gpb.GenerateResponse], Callable[[], None]]:
    """The first event, the stream of the rest, and the release of the key's stream slot (taken
    here: 429 beyond ``max_streams_per_key``; released here when opening fails, else by the caller
    when the stream ends)."""
    release = runtime.streams.acquire(key_hash)
    try:
        first, events = await runtime.downstream.generator.stream(request, fields=fields)
    except BaseException:
        release()
        raise
    if first is None:
        events.close()
        release()
        raise ApiError(502, "The generator ended the stream without an answer.", code="bad_gateway")
    return first, events, release
