"""``/v1/aliases``: the tenant's model aliases and the promotions that move them (ragtune extension).

``POST /v1/aliases/{alias}/promotions`` takes a candidate adapter with its held-out score and the
holder it was compared with (and that holder's score on the same questions); ``ragtune eval
--promote`` and ``POST /v1/evaluations`` with ``promote`` measure both and call it.
``POST /v1/aliases/{alias}/rollback`` gives the alias back to the holder its last move displaced."""

from __future__ import annotations

from fastapi import APIRouter

from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.schemas.aliases import (
    AliasDeleted,
    AliasList,
    AliasPromotion,
    ModelAlias,
    PromotionList,
    PromotionRequest,
)
from ragtune_gateway.schemas.common import PathId
from ragtune_gateway.services import aliases

router = APIRouter(prefix="/v1/aliases", tags=["models"])


@router.get("", response_model=AliasList)
async def list_aliases(runtime: Runtime, tenant: TenantId) -> AliasList:
    return await aliases.list_aliases(runtime, tenant)


@router.get("/{alias}", response_model=ModelAlias)
async def get_alias(alias: PathId, runtime: Runtime, tenant: TenantId) -> ModelAlias:
    return await aliases.get_alias(runtime, tenant, alias)


@router.delete("/{alias}", response_model=AliasDeleted)
async def delete_alias(alias: PathId, runtime: Runtime, tenant: TenantId) -> AliasDeleted:
    return await aliases.delete_alias(runtime, tenant, alias)


@router.get("/{alias}/promotions", response_model=PromotionList)
async def list_promotions(alias: PathId, runtime: Runtime, tenant: TenantId) -> PromotionList:
    return await aliases.list_promotions(runtime, tenant, alias)


@router.post("/{alias}/promotions", response_model=AliasPromotion)
async def create_promotion(alias: PathId, body: PromotionRequest, runtime: Runtime, tenant: TenantId) -> AliasPromotion:
    return await aliases.promote(runtime, tenant, alias, body)


@router.post("/{alias}/rollback", response_model=AliasPromotion)
async def rollback_alias(alias: PathId, runtime: Runtime, tenant: TenantId) -> AliasPromotion:
    """Give the alias back to the holder its last move displaced, in one call; recorded in
    ``/promotions`` like every move."""
    return await aliases.rollback(runtime, tenant, alias)
