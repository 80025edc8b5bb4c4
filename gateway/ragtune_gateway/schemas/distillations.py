"""``/v1/distillations`` (a ragtune extension): a fine-tuning file in the chat format built from the
tenant's stored chat completions, chosen by a filter, with a held-out share kept apart for the
evaluation, and optionally re-answered by a teacher model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from ragtune_gateway.schemas.common import ResponseModel, Text, WireModel
from ragtune_gateway.schemas.metadata import Metadata

Rating = Literal["good", "bad", "none"]
Timestamp = Annotated[int, Field(ge=0, le=253_402_300_799)]  # Unix seconds, before year 10000
MAX_COMPLETIONS = 100_000


class DistillationFilter(WireModel):
    """Which stored completions to take: every condition given must hold."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[Text, Field(min_length=1, max_length=256)] | None = Field(
        default=None, description="the model that answered or the model or alias the request named"
    )
    metadata: Metadata | None = Field(default=None, description="pairs the completion's metadata must all hold")
    feedback: list[Rating] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description="ratings to take ('none': not rated); default all. A 'bad' answer is taken only with a correction",
    )
    created_after: Timestamp | None = Field(default=None, description="Unix seconds, inclusive")
    created_before: Timestamp | None = Field(default=None, description="Unix seconds, exclusive")
    limit: int | None = Field(default=None, ge=1, le=MAX_COMPLETIONS, description="the newest this many at most")


class Teacher(WireModel):
    """The model that re-answers the kept training prompts (corrections still win). Without
    ``base_url``: one of the tenant's own models on this server (base, adapter or alias). With it:
    any OpenAI-compatible endpoint the operator allowed (``RAGTUNE_GATEWAY_TEACHER_BASE_URLS``),
    called with ``RAGTUNE_GATEWAY_TEACHER_API_KEY``."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[Text, Field(min_length=1, max_length=256)]
    base_url: Annotated[Text, Field(min_length=1, max_length=512)] | None = Field(
        default=None, description="e.g. https://api.openai.com/v1; default: this server"
    )
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)


class CreateDistillation(WireModel):
    model_config = ConfigDict(extra="forbid")

    filter: DistillationFilter = Field(default_factory=DistillationFilter)
    holdout_fraction: float = Field(
        default=0.2, ge=0, le=0.9, description="share of the distinct prompts kept apart for the evaluation"
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="chooses the held-out prompts")
    teacher: Teacher | None = None
    filename: Annotated[Text, Field(min_length=1, max_length=256)] | None = Field(
        default=None, description="the training file's name (default distilled-<id>.jsonl)"
    )


class DistillationCounts(ResponseModel):
    matched: int = Field(description="stored completions the filter matched")
    rejected: int = Field(description="rated bad without a correction: left out")
    merged: int = Field(description="duplicates of another completion's messages, merged into its line")
    training: int = Field(description="lines of the training file")
    holdout: int = Field(description="completions kept apart for the evaluation")
    corrected: int = Field(description="training lines whose answer is a correction")
    teacher: int = Field(description="training lines whose answer is the teacher's")


class Distillation(ResponseModel):
    id: str
    object: Literal["distillation"] = "distillation"
    created_at: int
    file_id: str | None = Field(description="the training file (purpose fine-tune); null once it is gone")
    filename: str
    filter: dict[str, Any]
    holdout_fraction: float
    seed: int
    teacher: dict[str, Any] | None = Field(description="the teacher's base URL and model (never a key)")
    counts: DistillationCounts
    holdout_completion_ids: list[str] = Field(
        description="the held-out completions: an eval run's stored_completions source with"
        " distillation_id=<this id> takes exactly these"
    )
