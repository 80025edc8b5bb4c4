"""``/v1/evals``: the OpenAI Evals API — evals, their runs and the runs' output items — as the
official client calls it (``client.evals``, ``client.evals.runs``, ``client.evals.runs.output_items``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.routers.evaluations import Worker
from ragtune_gateway.schemas.aliases import AliasPromotion
from ragtune_gateway.schemas.common import Cursor, Id, ListPage, PathId
from ragtune_gateway.schemas.evals import (
    CreateEval,
    CreateRun,
    EvalComparison,
    EvalDeleted,
    EvalObject,
    EvalRunDeleted,
    EvalRunObject,
    OutputItemObject,
    PromoteFromRuns,
    RunStatus,
    UpdateEval,
)
from ragtune_gateway.services import eval_verdict
from ragtune_gateway.services import evals as service

router = APIRouter(prefix="/v1/evals", tags=["evals"])
Limit = Annotated[int, Query(ge=1, le=100)]
Order = Literal["asc", "desc"]


@router.post("", response_model=EvalObject)
async def create_eval(body: CreateEval, runtime: Runtime, tenant: TenantId) -> EvalObject:
    return await service.create_eval(runtime, tenant, body)


@router.get("", response_model=ListPage[EvalObject])
async def list_evals(
    runtime: Runtime,
    tenant: TenantId,
    after: Cursor = "",
    limit: Limit = 20,
    order: Order = "asc",
    order_by: Literal["created_at"] = "created_at",
) -> ListPage[EvalObject]:
    return await service.list_evals(runtime, tenant, after, limit, order)


@router.get("/{eval_id}", response_model=EvalObject)
async def get_eval(eval_id: PathId, runtime: Runtime, tenant: TenantId) -> EvalObject:
    return await service.get_eval(runtime, tenant, eval_id)


@router.post("/{eval_id}", response_model=EvalObject)
async def update_eval(eval_id: PathId, body: UpdateEval, runtime: Runtime, tenant: TenantId) -> EvalObject:
    return await service.update_eval(runtime, tenant, eval_id, body)


@router.delete("/{eval_id}", response_model=EvalDeleted)
async def delete_eval(eval_id: PathId, runtime: Runtime, tenant: TenantId) -> EvalDeleted:
    """Deletes the eval with its runs and their output items."""
    return await service.delete_eval(runtime, tenant, eval_id)


@router.post("/{eval_id}/runs", response_model=EvalRunObject)
async def create_run(
    eval_id: PathId, body: CreateRun, runtime: Runtime, worker: Worker, tenant: TenantId
) -> EvalRunObject:
    """Checks every item against the eval's schema, stores the run queued; a worker samples and grades it."""
    return await service.create_run(runtime, worker, tenant, eval_id, body)


@router.get("/{eval_id}/runs", response_model=ListPage[EvalRunObject])
async def list_runs(
    eval_id: PathId,
    runtime: Runtime,
    tenant: TenantId,
    after: Cursor = "",
    limit: Limit = 20,
    order: Order = "asc",
    status: RunStatus | None = None,
) -> ListPage[EvalRunObject]:
    return await service.list_runs(runtime, tenant, eval_id, status, after, limit, order)


@router.get("/{eval_id}/runs/{run_id}", response_model=EvalRunObject)
async def get_run(eval_id: PathId, run_id: PathId, runtime: Runtime, tenant: TenantId) -> EvalRunObject:
    return await service.get_run(runtime, tenant, eval_id, run_id)


@router.post("/{eval_id}/runs/{run_id}/cancel", response_model=EvalRunObject)
@router.post("/{eval_id}/runs/{run_id}", response_model=EvalRunObject)
async def cancel_run(
    eval_id: PathId, run_id: PathId, runtime: Runtime, worker: Worker, tenant: TenantId
) -> EvalRunObject:
    """Cancels a queued or running run (the official client posts to ``.../cancel``; the API
    reference also names the run itself)."""
    return await service.cancel_run(runtime, worker, tenant, eval_id, run_id)


@router.delete("/{eval_id}/runs/{run_id}", response_model=EvalRunDeleted)
async def delete_run(
    eval_id: PathId, run_id: PathId, runtime: Runtime, worker: Worker, tenant: TenantId
) -> EvalRunDeleted:
    return await service.delete_run(runtime, worker, tenant, eval_id, run_id)


@router.get("/{eval_id}/runs/{run_id}/output_items", response_model=ListPage[OutputItemObject])
async def list_output_items(
    eval_id: PathId,
    run_id: PathId,
    runtime: Runtime,
    tenant: TenantId,
    after: Cursor = "",
    limit: Limit = 20,
    order: Order = "asc",
    status: Literal["pass", "fail", "error"] | None = None,
) -> ListPage[OutputItemObject]:
    return await service.list_output_items(runtime, tenant, eval_id, run_id, status, after, limit, order)


@router.get("/{eval_id}/runs/{run_id}/output_items/{output_item_id}", response_model=OutputItemObject)
async def get_output_item(
    eval_id: PathId, run_id: PathId, output_item_id: PathId, runtime: Runtime, tenant: TenantId
) -> OutputItemObject:
    return await service.get_output_item(runtime, tenant, eval_id, run_id, output_item_id)


@router.get("/{eval_id}/comparison", response_model=EvalComparison)
async def compare_runs(
    eval_id: PathId,
    runtime: Runtime,
    tenant: TenantId,
    run_ids: Annotated[list[Id] | None, Query(max_length=16)] = None,
    level: Annotated[float, Query(ge=0.5, lt=1)] = 0.95,
) -> EvalComparison:
    """ragtune's verdict over the runs of one eval (default: its completed runs): pass rates with
    intervals, paired differences on shared items, and which run to use."""
    return await eval_verdict.compare(runtime, tenant, eval_id, run_ids or [], level)


@router.post("/{eval_id}/promote", response_model=AliasPromotion)
async def promote(eval_id: PathId, body: PromoteFromRuns, runtime: Runtime, tenant: TenantId) -> AliasPromotion:
    """Offer a completed run's adapter for an alias: over a holder, the holder's run of this eval is
    the baseline and the alias moves only on a significant paired improvement (recorded either way)."""
    return await eval_verdict.promote(runtime, tenant, eval_id, body)
