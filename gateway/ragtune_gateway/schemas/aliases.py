"""``/v1/aliases``: a tenant's model aliases and the promotions that move them (ragtune extension).

An alias name is ``ft:`` and a name without further colons, so it is never the name of an adapter
(``ft:<base>:<suffix>:<id>``)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field

from ragtune_gateway.schemas.common import Deleted, Id, JsonObject, ListPage, ResponseModel, WireModel

ALIAS = re.compile(r"ft:[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def is_alias(name: str) -> bool:
    """Whether ``name`` is an alias name (rather than a model's)."""
    return ALIAS.fullmatch(name) is not None


class PromotionComparison(WireModel):
    """The candidate's paired difference from the holder on the same questions (candidate - holder,
    in points of ``metric``), with its confidence interval: what a promotion over a holder needs."""

    model_config = ConfigDict(extra="forbid")

    value: float = Field(description="mean difference, candidate - holder")
    low: float = Field(description="lower end of the confidence interval")
    high: float = Field(description="upper end of the confidence interval")
    level: float = Field(ge=0.5, lt=1, description="the interval's confidence level, e.g. 0.95")
    test: str = Field(default="paired-bootstrap", min_length=1, max_length=64, description="how it was computed")
    questions: int = Field(ge=1, le=10_000_000, description="the paired questions")
    p_value: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="for a 0/1 metric, an exact paired test's p-value (McNemar): a promotion then also needs it"
        " below 1 - level, as the comparison of runs calls a difference significant",
    )


class PromotionRequest(WireModel):
    model_config = ConfigDict(extra="forbid")

    candidate: Id = Field(description="the adapter to promote")
    candidate_score: float
    holder: Id | None = Field(default=None, description="the holder the candidate was compared with; null: none")
    holder_score: float | None = None
    metric: Literal["f1", "em", "pass_rate"] = Field(
        default="f1", description="f1/em of /v1/evaluations; pass_rate of a grader of /v1/evals"
    )
    evaluation: JsonObject = Field(default_factory=dict, description="where the scores come from")
    comparison: PromotionComparison | None = Field(
        default=None,
        description="required over a holder: the paired difference and its interval; the candidate is promoted"
        " only when the interval lies above zero",
    )


class ModelAlias(ResponseModel):
    id: str = Field(description="the alias, e.g. 'ft:latest-good'")
    object: Literal["model.alias"] = "model.alias"
    model: str = Field(description="the adapter that holds it")
    metric: str
    score: float = Field(description="the holder's score when it took the alias")
    evaluation: dict[str, Any] = Field(description="where the score comes from")
    updated_at: int = Field(description="when the alias last moved (Unix seconds)")


class AliasPromotion(ResponseModel):
    """One decision, promoted or not, with both scores."""

    id: str
    object: Literal["model.alias.promotion"] = "model.alias.promotion"
    alias: str
    candidate: str
    candidate_score: float
    holder: str | None = Field(description="the holder when the decision was taken; null: none")
    holder_score: float | None
    metric: str
    promoted: bool
    reason: str
    evaluation: dict[str, Any]
    comparison: dict[str, Any] | None = Field(default=None, description="the paired difference the decision used")
    created_at: int


class AliasDeleted(Deleted):
    object: Literal["model.alias"] = "model.alias"


AliasList = ListPage[ModelAlias]
PromotionList = ListPage[AliasPromotion]
