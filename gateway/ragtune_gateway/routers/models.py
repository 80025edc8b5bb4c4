"""``/v1/models``: the base model, the caller's own fine-tuned adapters, its aliases and the
embedding models ``/v1/embeddings`` takes."""

from __future__ import annotations

from fastapi import APIRouter

from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.schemas.common import PathId
from ragtune_gateway.schemas.models import AnyModel, ModelList
from ragtune_gateway.services import models

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList)
async def list_models(runtime: Runtime, tenant: TenantId) -> ModelList:
    return await models.list_models(runtime, tenant)


@router.get("/{model:path}", response_model=AnyModel)
async def get_model(model: PathId, runtime: Runtime, tenant: TenantId) -> AnyModel:
    return await models.get_model(runtime, tenant, model)
