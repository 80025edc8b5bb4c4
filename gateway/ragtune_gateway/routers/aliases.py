"""``/v1/aliases``: the tenant's model aliases and the promotions that move them (ragtune extension).

``POST /v1/aliases/{alias}/promotions`` takes a candidate adapter with its held-out score and the
holder it was compared with (and that holder's score on the same questions); ``ragtune eval
--promote`` and ``POST /v1/evaluations`` with ``promote`` measure both and call it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ragtune_gateway import aliases
from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.routers.models import resolve_adapter
from ragtune_gateway.schemas.aliases import PromotionRequest

router = APIRouter(prefix="/v1/aliases", tags=["models"])


async def owned_alias(runtime: Runtime, tenant: str, alias: str) -> aliases.Alias:
    aliases.check_alias(alias)
    row = await aliases.get_alias(runtime.pool, tenant, alias)
    if row is None:
        raise not_found("alias", alias)
    return row


@router.get("")
async def list_aliases(runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    rows = await aliases.list_aliases(runtime.pool, tenant)
    return {"object": "list", "data": [aliases.alias_object(r) for r in rows]}


@router.get("/{alias}")
async def get_alias(alias: str, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    return aliases.alias_object(await owned_alias(runtime, tenant, alias))


@router.delete("/{alias}")
async def delete_alias(alias: str, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    aliases.check_alias(alias)
    if not await aliases.delete_alias(runtime.pool, tenant, alias):
        raise not_found("alias", alias)
    return {"id": alias, "object": "model.alias", "deleted": True}


@router.get("/{alias}/promotions")
async def list_promotions(alias: str, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    aliases.check_alias(alias)
    rows = await aliases.list_promotions(runtime.pool, tenant, alias)
    return {"object": "list", "data": [aliases.promotion_object(r) for r in rows]}


@router.post("/{alias}/promotions")
async def create_promotion(alias: str, body: PromotionRequest, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    aliases.check_alias(alias)
    if aliases.is_alias(body.candidate):
        raise ApiError(400, "The candidate must be an adapter, not an alias.", param="candidate")
    if not await resolve_adapter(runtime, tenant, body.candidate, param="candidate"):
        raise ApiError(400, "Only fine-tuned adapters can hold an alias.", param="candidate")
    row = await aliases.promote(
        runtime.pool,
        tenant,
        alias,
        candidate=body.candidate,
        candidate_score=body.candidate_score,
        expected_holder=body.holder,
        holder_score=body.holder_score,
        metric=body.metric,
        evaluation=body.evaluation,
    )
    return aliases.promotion_object(row)
