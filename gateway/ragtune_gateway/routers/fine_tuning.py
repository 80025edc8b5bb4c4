"""``/v1/fine_tuning/jobs``: LoRA jobs on the trainer, scoped to the caller's tenant
(:mod:`ragtune_gateway.services.fine_tuning`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.schemas.common import Cursor, ListPage, PathId
from ragtune_gateway.schemas.fine_tuning import (
    CreateJob,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
)
from ragtune_gateway.services import fine_tuning as service

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


@router.post("", response_model=FineTuningJob)
async def create_job(body: CreateJob, runtime: Runtime, tenant: TenantId) -> FineTuningJob:
    return await service.create_job(runtime, tenant, body)


@router.get("", response_model=ListPage[FineTuningJob])
async def list_jobs(
    runtime: Runtime, tenant: TenantId, after: Cursor = "", limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> ListPage[FineTuningJob]:
    """Newest first; ``after`` is the last job id of the previous page."""
    return await service.list_jobs(runtime, tenant, after, limit)


@router.get("/{job_id}", response_model=FineTuningJob)
async def get_job(job_id: PathId, runtime: Runtime, tenant: TenantId) -> FineTuningJob:
    return await service.get_job(runtime, tenant, job_id)


@router.post("/{job_id}/cancel", response_model=FineTuningJob)
async def cancel_job(job_id: PathId, runtime: Runtime, tenant: TenantId) -> FineTuningJob:
    return await service.cancel_job(runtime, tenant, job_id)


@router.post("/{job_id}/publish", response_model=FineTuningJob)
async def publish_job(job_id: PathId, runtime: Runtime, tenant: TenantId) -> FineTuningJob:
    """Offer a succeeded job's adapter to the generators again (a ragtune extension, for a job whose
    ``publish_state`` is ``failed``): 400 unless the job succeeded, 503 while no generator answers."""
    return await service.publish_job(runtime, tenant, job_id)


@router.get(
    "/{job_id}/events",
    response_model=ListPage[FineTuningJobEvent],
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def list_events(
    job_id: PathId,
    runtime: Runtime,
    tenant: TenantId,
    http: Request,
    after: Cursor = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    stream: bool = False,
) -> ListPage[FineTuningJobEvent] | StreamingResponse:
    """Events oldest first after the event id ``after``; ``stream=true`` follows the job live as
    server-sent events until it finishes (a ragtune extension the CLI uses)."""
    if stream:
        return await service.follow_events(runtime, tenant, http.state.key_hash, job_id, after)
    return await service.list_events(runtime, tenant, job_id, after, limit)


@router.get("/{job_id}/checkpoints", response_model=ListPage[FineTuningJobCheckpoint])
async def list_checkpoints(job_id: PathId, runtime: Runtime, tenant: TenantId) -> ListPage[FineTuningJobCheckpoint]:
    return await service.list_checkpoints(runtime, tenant, job_id)
