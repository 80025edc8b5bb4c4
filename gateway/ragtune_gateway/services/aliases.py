"""Model aliases and their promotions.

An alias (``ft:latest-good``) names whichever of the tenant's adapters (or the base model) currently
holds it; chat completions accept it wherever a model name goes. It moves only through a promotion: a candidate
and the holder, both scored on the same held-out questions, and the candidate takes the alias only
when its paired improvement is significant: the confidence interval of candidate - holder lies
above zero at a level of at least ``RAGTUNE_GATEWAY_PROMOTION_MIN_LEVEL`` (or the alias has no
holder). A higher mean inside the noise keeps the holder. The caller states which holder it
measured; if the alias moved meanwhile the promotion is refused with a conflict, so a decision is
never taken against a holder nobody measured. Every decision is recorded with both scores. A
rollback gives the alias back to the holder the last move displaced, and is recorded the same way.
"""

from __future__ import annotations

from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.repositories import aliases as alias_rows
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.aliases import (
    AliasDeleted,
    AliasList,
    AliasPromotion,
    ModelAlias,
    PromotionComparison,
    PromotionList,
    PromotionRequest,
    is_alias,
)
from ragtune_gateway.services.models import resolve_adapter

__all__ = [
    "check_alias",
    "decide",
    "delete_alias",
    "get_alias",
    "is_alias",
    "list_aliases",
    "list_promotions",
    "promote",
    "rollback",
]


def check_alias(name: str, param: str = "alias") -> str:
    """``name`` when it is an alias name, else 400 naming ``param``."""
    if not is_alias(name):
        raise ApiError(
            400,
            f"Invalid alias {name!r}: use 'ft:' and 1-64 letters, digits, '.', '_' or '-' (no further ':').",
            param=param,
            code="invalid_alias",
        )
    return name


def decide(
    candidate: str,
    score: float,
    holder: alias_rows.Alias | None,
    holder_score: float | None,
    comparison: PromotionComparison | None = None,
) -> tuple[bool, str]:
    """(promoted, why). Over a holder, only a significant paired improvement promotes: the
    interval of candidate - holder must lie above zero, and for a 0/1 metric the exact test must
    agree at the same level (a tie or noise keeps the holder)."""
    if holder is None:
        return True, "the alias had no holder"
    if holder.model == candidate:
        return False, "the candidate already holds the alias"
    assert holder_score is not None and comparison is not None
    exact = f", p = {comparison.p_value:.3g}" if comparison.p_value is not None else ""
    interval = (
        f"{comparison.value:+.3g} ({comparison.level:.0%} CI [{comparison.low:+.3g}, {comparison.high:+.3g}], "
        f"{comparison.test} over {comparison.questions} questions{exact}; {score:.4g} vs the holder's"
        f" {holder_score:.4g})"
    )
    exact_agrees = comparison.p_value is None or comparison.p_value < 1 - comparison.level
    if comparison.low > 0 and exact_agrees:
        return True, f"a significant improvement: {interval}"
    return False, f"no significant improvement: {interval}"


def alias_object(row: alias_rows.Alias) -> ModelAlias:
    return ModelAlias(
        id=row.alias,
        model=row.model,
        metric=row.metric,
        score=row.score,
        evaluation=row.evaluation,
        updated_at=int(row.updated_at.timestamp()),
    )


def promotion_object(row: alias_rows.Promotion) -> AliasPromotion:
    return AliasPromotion(
        id=row.id,
        alias=row.alias,
        candidate=row.candidate,
        candidate_score=row.candidate_score,
        holder=row.holder,
        holder_score=row.holder_score,
        metric=row.metric,
        promoted=row.promoted,
        reason=row.reason,
        evaluation=row.evaluation,
        comparison=row.evaluation.get("comparison"),
        created_at=int(row.created_at.timestamp()),
    )


async def list_aliases(runtime: GatewayRuntime, tenant: str) -> AliasList:
    return AliasList.of([alias_object(r) for r in await alias_rows.list_aliases(runtime.pool, tenant)])


async def get_alias(runtime: GatewayRuntime, tenant: str, alias: str) -> ModelAlias:
    row = await alias_rows.get_alias(runtime.pool, tenant, check_alias(alias))
    if row is None:
        raise not_found("alias", alias)
    return alias_object(row)


async def delete_alias(runtime: GatewayRuntime, tenant: str, alias: str) -> AliasDeleted:
    if not await alias_rows.delete_alias(runtime.pool, tenant, check_alias(alias)):
        raise not_found("alias", alias)
    return AliasDeleted(id=alias)


async def list_promotions(runtime: GatewayRuntime, tenant: str, alias: str) -> PromotionList:
    rows = await alias_rows.list_promotions(runtime.pool, tenant, check_alias(alias))
    return PromotionList.of([promotion_object(r) for r in rows])


def check_comparison(comparison: PromotionComparison | None, min_level: float) -> PromotionComparison:
    """A promotion over a holder carries a coherent paired comparison at the required level."""
    if comparison is None:
        message = "The alias has a holder: the paired comparison with it (difference and interval) is required."
        raise ApiError(400, message, param="comparison", code="comparison_required")
    if comparison.level < min_level:
        message = f"The interval's level {comparison.level} is below the required {min_level}."
        raise ApiError(400, message, param="comparison.level", code="invalid_value")
    if not comparison.low <= comparison.value <= comparison.high:
        raise ApiError(400, "The interval must hold the difference: low <= value <= high.", param="comparison")
    return comparison


async def promote(runtime: GatewayRuntime, tenant: str, alias: str, body: PromotionRequest) -> AliasPromotion:
    """Decide and record, under the alias's lock: refused (409) when the alias has moved away from
    the holder the caller measured; nothing is written then."""
    check_alias(alias)
    if is_alias(body.candidate):
        raise ApiError(400, "The candidate must be an adapter, not an alias.", param="candidate")
    await resolve_adapter(runtime, tenant, body.candidate, param="candidate")  # an adapter or the base model
    async with alias_rows.locked_alias(runtime.pool, tenant, alias) as locked:
        holder = locked.holder
        current = holder.model if holder else None
        if current != body.holder:
            raise ApiError(
                409,
                f"The alias '{alias}' is held by {current!r}, not {body.holder!r}: evaluate against the"
                " current holder and try again.",
                param="holder",
                code="alias_moved",
            )
        if holder is not None and holder.model != body.candidate and body.holder_score is None:
            raise ApiError(
                400, f"The alias '{alias}' has a holder: its score is required.", param="holder_score", code=None
            )
        if holder is not None and holder.model != body.candidate:
            check_comparison(body.comparison, runtime.settings.promotion_min_level)
        evaluation = dict(body.evaluation)
        if body.comparison is not None:
            evaluation["comparison"] = body.comparison.model_dump()
        promoted, reason = decide(body.candidate, body.candidate_score, holder, body.holder_score, body.comparison)
        if promoted:
            await locked.hold(body.candidate, body.metric, body.candidate_score, evaluation)
        row = await locked.record(
            candidate=body.candidate,
            candidate_score=body.candidate_score,
            holder_score=body.holder_score,
            metric=body.metric,
            promoted=promoted,
            reason=reason,
            evaluation=evaluation,
        )
    return promotion_object(row)


async def rollback(runtime: GatewayRuntime, tenant: str, alias: str) -> AliasPromotion:
    """The alias goes back to the holder its last move displaced (a rollback of a rollback moves it
    forward again), recorded as a promotion of that holder with ``evaluation.rollback_of`` naming the
    move it undoes. 404 without a holder; 409 when the last move had no previous holder."""
    check_alias(alias)
    async with alias_rows.locked_alias(runtime.pool, tenant, alias) as locked:
        holder = locked.holder
        if holder is None:
            raise not_found("alias", alias)
        move = await locked.last_move()
        if move is None or move.holder is None:
            message = f"The alias '{alias}' had no holder before {holder.model!r}: there is nothing to roll back to."
            raise ApiError(409, message, param="alias", code="no_previous_holder")
        await resolve_adapter(runtime, tenant, move.holder, param="alias")
        score = move.holder_score if move.holder_score is not None else 0.0
        evaluation = {"rollback_of": move.id, "evaluation": move.evaluation}
        await locked.hold(move.holder, move.metric, score, evaluation)
        row = await locked.record(
            candidate=move.holder,
            candidate_score=score,
            holder_score=holder.score,
            metric=move.metric,
            promoted=True,
            reason=f"rollback: {move.holder!r} holds the alias again in place of {holder.model!r}",
            evaluation=evaluation,
        )
    return promotion_object(row)
