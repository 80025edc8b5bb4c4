"""The Embed use case: vectors of caller texts from an offered embedding model, computed exactly as
ingestion computes chunk vectors (the same :class:`~ragtune_retriever.embedding.Embedder`, its
ingest thread and batches, L2-normalised), so they compare by cosine with the stored ones; and the
tokens the model read, counted with its own tokenizer.

A model the server does not offer is NOT_FOUND naming ``model`` (an unknown name, not a malformed
request); texts are bounded in number and length (INVALID_ARGUMENT naming ``inputs`` or
``inputs[i]``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ragtune_common.errors import InvalidArgument, NotFound
from ragtune_retriever.embedding import EmbedderRegistry
from ragtune_retriever.validation import check_text


@dataclass(frozen=True)
class Embedded:
    """What one Embed call computed: ``vectors[i]`` is the vector of ``inputs[i]``."""

    model: str
    vectors: np.ndarray
    prompt_tokens: int


def check_inputs(inputs: Sequence[str], max_inputs: int, max_chars: int) -> list[str]:
    """The texts, if there are 1 to ``max_inputs`` of them, each non-empty, at most ``max_chars``
    characters long and without NUL."""
    if not inputs:
        raise InvalidArgument("at least one text is required", field="inputs")
    if len(inputs) > max_inputs:
        raise InvalidArgument(f"{len(inputs)} texts in one request, over the limit of {max_inputs}", field="inputs")
    for i, text in enumerate(inputs):
        field = f"inputs[{i}]"
        if not text:
            raise InvalidArgument("must not be empty", field=field)
        if len(text) > max_chars:
            raise InvalidArgument(f"is {len(text)} characters, over the limit of {max_chars}", field=field)
        check_text(text, field)
    return list(inputs)


async def embed_texts(embedders: EmbedderRegistry, model: str, inputs: list[str]) -> Embedded:
    """Vectors and token count of ``inputs`` under ``model`` (a name without a backend gets the
    server's default one, as a new collection would)."""
    try:
        name = embedders.resolve(model, field="model")
    except InvalidArgument as error:
        raise NotFound(error.message, field="model") from None
    try:
        embedder = await embedders.get(name)
    except InvalidArgument as error:  # an offered model that cannot run on the named backend
        raise InvalidArgument(error.message, field="model") from None
    tokens, vectors = await asyncio.gather(embedder.count_tokens(inputs), embedder.embed_documents(inputs))
    return Embedded(name, vectors, sum(tokens))
