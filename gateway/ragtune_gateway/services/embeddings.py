"""Embeddings: the tenant's texts turned into vectors by the retriever (``Embed``), with the model
the retriever's collections use, so a client can compare them with what vector stores hold."""

from __future__ import annotations

import array
import base64
import sys

from ragtune_gateway.errors import ApiError
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.embeddings import (
    EMBED_FIELDS,
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingRequest,
    EmbeddingUsage,
)
from ragtune_gateway.services.models import model_not_found


def encode_base64(values: list[float]) -> str:
    """``values`` as OpenAI's base64 encoding: little-endian float32 bytes."""
    packed = array.array("f", values)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


async def create_embeddings(runtime: GatewayRuntime, tenant: str, body: EmbeddingRequest) -> CreateEmbeddingResponse:
    reply = await runtime.downstream.retriever.embed(
        tenant, body.model, body.texts(), fields=EMBED_FIELDS, missing=model_not_found(body.model)
    )
    if body.dimensions is not None and body.dimensions != reply.dimensions:
        raise ApiError(
            400,
            f"{reply.model} gives {reply.dimensions} dimensions and cannot shorten them; omit dimensions"
            f" or send {reply.dimensions}.",
            param="dimensions",
            code="unsupported_value",
        )
    data = [
        Embedding(
            index=i,
            embedding=encode_base64(list(e.values)) if body.encoding_format == "base64" else list(e.values),
        )
        for i, e in enumerate(reply.embeddings)
    ]
    usage = EmbeddingUsage(prompt_tokens=reply.prompt_tokens, total_tokens=reply.prompt_tokens)
    return CreateEmbeddingResponse(data=data, model=reply.model, usage=usage)
