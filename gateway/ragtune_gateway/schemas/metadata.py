"""Metadata as OpenAI bounds it (at most 16 pairs, keys up to 64 characters, values up to 512), on
chat completions, responses and stored completions, and the two keys that carry feedback on a
stored chat completion (any OpenAI client can send them with ``chat.completions.update``):

- ``feedback``: ``"good"`` or ``"bad"`` (a rejected answer is left out of distilled datasets);
- ``correction``: the corrected answer (up to 512 characters, as every metadata value; a longer one
  goes in the ``correction`` extension field of the update).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from ragtune_gateway.schemas.vector_stores import MAX_METADATA_PAIRS, MetadataKey, MetadataValue

FEEDBACK_KEY = "feedback"
FEEDBACK_VALUES = ("good", "bad")
CORRECTION_KEY = "correction"


def check_feedback(metadata: dict[str, str]) -> dict[str, str]:
    """The reserved ``feedback`` key, when present, is ``good`` or ``bad``."""
    value = metadata.get(FEEDBACK_KEY)
    if value is not None and value not in FEEDBACK_VALUES:
        raise ValueError(f"'{FEEDBACK_KEY}' must be one of {', '.join(map(repr, FEEDBACK_VALUES))}, not {value!r:.40}")
    return metadata


Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=MAX_METADATA_PAIRS)]
CompletionMetadata = Annotated[Metadata, AfterValidator(check_feedback)]
