"""``/v1/fine_tuning/jobs``: LoRA jobs on the trainer, scoped to the caller's tenant."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from ragtune.trainer.v1 import trainer_pb2 as tpb
from ragtune_common.paging import next_page_token
from ragtune_gateway import fine_tuning as ft
from ragtune_gateway import limits, store
from ragtune_gateway.auth import Runtime, TenantId, metadata
from ragtune_gateway.errors import from_rpc_error, not_found, rpc_errors
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.common import Cursor, PathId
from ragtune_gateway.schemas.fine_tuning import CreateJob

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])
IDLE_S = 0.3  # a watch that stays quiet this long has delivered every stored event


def _number(value: str | float) -> tpb.NumberOrAuto:
    return tpb.NumberOrAuto(auto=True) if value == "auto" else tpb.NumberOrAuto(number=float(value))


def _job_request(tenant: str, body: CreateJob) -> tpb.CreateJobRequest:
    hyper = body.hyperparameters or (body.method and body.method.supervised and body.method.supervised.hyperparameters)
    request = tpb.CreateJobRequest(
        tenant=tenant,
        model=body.model,
        training_file=body.training_file,
        validation_file=body.validation_file or "",
        suffix=body.suffix or "",
        max_seq_length=body.max_seq_length,
        eval_interval_steps=body.eval_interval_steps,
        early_stopping_patience=body.early_stopping_patience,
        checkpoint_interval_steps=body.checkpoint_interval_steps,
    )
    if hyper:
        request.hyperparameters.CopyFrom(
            tpb.Hyperparameters(
                n_epochs=_number(hyper.n_epochs),
                batch_size=_number(hyper.batch_size),
                learning_rate_multiplier=_number(hyper.learning_rate_multiplier),
            )
        )
    if body.lora:
        request.lora.CopyFrom(
            tpb.LoraConfig(r=body.lora.r, alpha=body.lora.alpha, target_modules=body.lora.target_modules)
        )
        if body.lora.dropout is not None:
            request.lora.dropout = body.lora.dropout
    if body.seed is not None:
        request.seed = body.seed
    if body.validation_fraction is not None:
        request.validation_fraction = body.validation_fraction
    return request


async def _get_job(runtime: GatewayRuntime, tenant: str, job_id: str) -> tpb.Job:
    with rpc_errors("trainer", missing=not_found("fine-tuning job", job_id)):
        response = await runtime.downstream.trainer.GetJob(
            tpb.GetJobRequest(tenant=tenant, id=job_id), timeout=runtime.settings.rpc_timeout_s, metadata=metadata()
        )
    return response.job


@router.post("")
async def create_job(body: CreateJob, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    for param in ("training_file", "validation_file"):
        file_id = getattr(body, param)
        if file_id:
            record = await store.get_file(runtime.pool, tenant, file_id)
            if record is None or record.purpose != "fine-tune":
                raise not_found("fine-tune file", file_id, param)
    params = {"hyperparameters": "hyperparameters", "lora": "lora", "model": "model", "suffix": "suffix"}
    cap = runtime.settings.max_active_jobs_per_tenant
    async with limits.tenant_cap(runtime.pool, tenant, "fine-tuning-jobs"):  # one creation at a time, globally
        if cap and (active := await ft.count_active_jobs(runtime, tenant)) >= cap:
            what, setting = "queued or running fine-tuning jobs", "RAGTUNE_GATEWAY_MAX_ACTIVE_JOBS_PER_TENANT"
            raise limits.cap_reached(what, active, cap, setting, runtime.settings.cap_retry_after_s)
        with rpc_errors("trainer", params=params):
            response = await runtime.downstream.trainer.CreateJob(
                _job_request(tenant, body), timeout=runtime.settings.rpc_timeout_s, metadata=metadata()
            )
    return ft.job_object(response.job)


@router.get("")
async def list_jobs(
    runtime: Runtime, tenant: TenantId, after: Cursor = "", limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    """Newest first; ``after`` is the last job id of the previous page."""
    request = tpb.ListJobsRequest(tenant=tenant)
    request.page.page_size, request.page.page_token = limit, next_page_token([after], 1) if after else ""
    with rpc_errors("trainer", params={"page.page_token": "after"}):
        response = await runtime.downstream.trainer.ListJobs(
            request, timeout=runtime.settings.rpc_timeout_s, metadata=metadata()
        )
    return {
        "object": "list",
        "data": [ft.job_object(j) for j in response.jobs],
        "has_more": bool(response.next_page_token),
    }


@router.get("/{job_id}")
async def get_job(job_id: PathId, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    return ft.job_object(await _get_job(runtime, tenant, job_id))


@router.post("/{job_id}/cancel")
async def cancel_job(job_id: PathId, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    with rpc_errors("trainer", missing=not_found("fine-tuning job", job_id)):
        response = await runtime.downstream.trainer.CancelJob(
            tpb.CancelJobRequest(tenant=tenant, id=job_id),
            timeout=runtime.settings.rpc_timeout_s + 30,
            metadata=metadata(),
        )
    return ft.job_object(response.job)


@router.post("/{job_id}/publish")
async def publish_job(job_id: PathId, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    """Offer a succeeded job's adapter to the generators again (a ragtune extension, for a job whose
    ``publish_state`` is ``failed``): 400 unless the job succeeded, 503 while no generator answers."""
    with rpc_errors("trainer", missing=not_found("fine-tuning job", job_id)):
        response = await runtime.downstream.trainer.PublishJob(
            tpb.PublishJobRequest(tenant=tenant, id=job_id),
            timeout=runtime.settings.rpc_timeout_s + 60,  # the trainer's publish_timeout_s, by default
            metadata=metadata(),
        )
    return ft.job_object(response.job)


def _watch(runtime: GatewayRuntime, tenant: str, job_id: str, after_seq: int, timeout: float | None) -> Any:
    request = tpb.WatchJobRequest(tenant=tenant, id=job_id, after_seq=after_seq)
    return runtime.downstream.trainer.WatchJob(request, timeout=timeout, metadata=metadata())


@router.get("/{job_id}/events", response_model=None)
async def list_events(
    job_id: PathId,
    runtime: Runtime,
    tenant: TenantId,
    http: Request,
    after: Cursor = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    stream: bool = False,
) -> dict[str, Any] | StreamingResponse:
    """Events oldest first after the event id ``after``; ``stream=true`` follows the job live as
    server-sent events until it finishes (a ragtune extension the CLI uses)."""
    job = await _get_job(runtime, tenant, job_id)
    if stream:
        release = runtime.streams.acquire(http.state.key_hash)  # 429 beyond max_streams_per_key
        return limits.limited_stream(_follow(runtime, tenant, job.id, ft.event_seq(after)), release)
    final = ft.job_status(job) in ft.FINAL
    call = _watch(runtime, tenant, job.id, ft.event_seq(after), runtime.settings.rpc_timeout_s)
    events: list[tpb.JobEvent] = []
    items = call.__aiter__()
    try:
        with rpc_errors("trainer", missing=not_found("fine-tuning job", job_id)):
            while len(events) <= limit:
                try:
                    # a finished job's stream ends by itself; a live one is read until it goes quiet
                    wait = None if final else (runtime.settings.rpc_timeout_s if not events else IDLE_S)
                    events.append(await asyncio.wait_for(items.__anext__(), wait))
                except (StopAsyncIteration, TimeoutError):
                    break
    finally:
        call.cancel()
    return {"object": "list", "data": [ft.event_object(e) for e in events[:limit]], "has_more": len(events) > limit}


async def _follow(runtime: GatewayRuntime, tenant: str, job_id: str, after_seq: int) -> AsyncIterator[bytes]:
    call = _watch(runtime, tenant, job_id, after_seq, None)
    try:
        async for event in call:
            yield f"data: {json.dumps(ft.event_object(event))}\n\n".encode()
    except grpc.aio.AioRpcError as exc:
        yield f"data: {json.dumps(from_rpc_error(exc, 'trainer').body())}\n\n".encode()
        return
    finally:
        call.cancel()
    yield b"data: [DONE]\n\n"


@router.get("/{job_id}/checkpoints")
async def list_checkpoints(job_id: PathId, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    job = await _get_job(runtime, tenant, job_id)
    with rpc_errors("trainer", missing=not_found("fine-tuning job", job_id)):
        response = await runtime.downstream.trainer.ListCheckpoints(
            tpb.ListCheckpointsRequest(tenant=tenant, job_id=job.id),
            timeout=runtime.settings.rpc_timeout_s,
            metadata=metadata(),
        )
    data = [ft.checkpoint_object(job, c) for c in response.checkpoints]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
