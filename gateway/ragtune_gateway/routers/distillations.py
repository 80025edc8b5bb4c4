"""``/v1/distillations`` (a ragtune extension): build a fine-tuning file from stored chat
completions (see :mod:`ragtune_gateway.services.distillations`), and read back what was built."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.schemas.common import Cursor, ListPage, PathId
from ragtune_gateway.schemas.distillations import CreateDistillation, Distillation
from ragtune_gateway.services import distillations as service

router = APIRouter(prefix="/v1/distillations", tags=["fine-tuning"])


@router.post("", response_model=Distillation)
async def create_distillation(body: CreateDistillation, runtime: Runtime, tenant: TenantId) -> Distillation:
    """A fine-tuning file (purpose fine-tune, in /v1/files) from the stored completions the filter
    matches: corrections replace answers, bad answers without one are left out, duplicates merged,
    ``holdout_fraction`` of the prompts kept apart for the evaluation; optionally re-answered by a
    ``teacher``."""
    return await service.create(runtime, tenant, body)


@router.get("", response_model=ListPage[Distillation])
async def list_distillations(
    runtime: Runtime, tenant: TenantId, after: Cursor = "", limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> ListPage[Distillation]:
    """Newest first."""
    return await service.list_distillations(runtime, tenant, after, limit)


@router.get("/{distillation_id}", response_model=Distillation)
async def get_distillation(distillation_id: PathId, runtime: Runtime, tenant: TenantId) -> Distillation:
    return await service.get(runtime, tenant, distillation_id)
