"""``POST /v1/aliases/{alias}/promotions``: a candidate adapter's claim to an alias."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from ragtune_gateway.schemas.common import Id, JsonObject, WireModel


class PromotionRequest(WireModel):
    model_config = ConfigDict(extra="forbid")

    candidate: Id = Field(description="the adapter to promote")
    candidate_score: float
    holder: Id | None = Field(default=None, description="the holder the candidate was compared with; null: none")
    holder_score: float | None = None
    metric: Literal["f1", "em"] = "f1"
    evaluation: JsonObject = Field(default_factory=dict, description="where the scores come from")
