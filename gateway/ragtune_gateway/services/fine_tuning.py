"""Fine-tuning jobs on the trainer, scoped to the caller's tenant: creation (under the tenant's cap
of active jobs), listing, cancelling, publishing again, events (a page, or followed live as
server-sent events) and checkpoints, answered in the OpenAI fine-tuning shapes
(:mod:`ragtune_gateway.schemas.fine_tuning`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi.responses import StreamingResponse

from ragtune.trainer.v1 import trainer_pb2 as tpb
from ragtune_common.paging import next_page_token
from ragtune_common.statuses import FINAL
from ragtune_gateway import ids, limits
from ragtune_gateway.errors import RETRY_AFTER_S, ApiError, not_found
from ragtune_gateway.repositories import files
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.common import ListPage
from ragtune_gateway.schemas.fine_tuning import (
    JOB_FIELDS,
    CheckpointMetrics,
    CreateJob,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    JobError,
    JobHyperparameters,
    JobLora,
    JobMethod,
    JobStatus,
    PublishState,
    SupervisedMethod,
)

STATUS: dict[int, JobStatus] = {
    tpb.JOB_STATUS_VALIDATING_FILES: "validating_files",
    tpb.JOB_STATUS_QUEUED: "queued",
    tpb.JOB_STATUS_RUNNING: "running",
    tpb.JOB_STATUS_SUCCEEDED: "succeeded",
    tpb.JOB_STATUS_FAILED: "failed",
    tpb.JOB_STATUS_CANCELLED: "cancelled",
}
PUBLISH: dict[int, PublishState] = {
    tpb.PUBLISH_STATE_PENDING: "pending",
    tpb.PUBLISH_STATE_PUBLISHED: "published",
    tpb.PUBLISH_STATE_FAILED: "failed",
}
ACTIVE = (tpb.JOB_STATUS_VALIDATING_FILES, tpb.JOB_STATUS_QUEUED, tpb.JOB_STATUS_RUNNING)
PAGE = 1000  # jobs per ListJobs call when counting
IDLE_S = 0.3  # a watch that stays quiet this long has delivered every stored event
CAP_SETTING = "RAGTUNE_GATEWAY_MAX_ACTIVE_JOBS_PER_TENANT"
CAP_KIND = "fine-tuning-jobs"


def _missing(job_id: str) -> ApiError:
    return not_found("fine-tuning job", job_id)


# Requests


def _number_or_auto(value: str | float) -> tpb.NumberOrAuto:
    return tpb.NumberOrAuto(auto=True) if value == "auto" else tpb.NumberOrAuto(number=float(value))


def job_request(tenant: str, body: CreateJob) -> tpb.CreateJobRequest:
    """The trainer's request for ``body`` (hyperparameters at the top level or under ``method``)."""
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
                n_epochs=_number_or_auto(hyper.n_epochs),
                batch_size=_number_or_auto(hyper.batch_size),
                learning_rate_multiplier=_number_or_auto(hyper.learning_rate_multiplier),
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


# Answers


def _seconds(job: tpb.Job, name: str) -> int | None:
    return getattr(job, name).seconds if job.HasField(name) else None  # type: ignore[no-any-return]


def _number(value: tpb.NumberOrAuto) -> float | int | Literal["auto"]:
    if value.WhichOneof("value") != "number":
        return "auto"
    return int(value.number) if value.number.is_integer() else value.number


def _whole(value: tpb.NumberOrAuto) -> int | Literal["auto"]:
    """A count (epochs, batch size): the trainer resolves and stores whole numbers only."""
    number = _number(value)
    return number if isinstance(number, str) else int(number)


def job_status(job: tpb.Job) -> JobStatus:
    """The trainer's status, as is: a finished job never reads ``running``. The trainer marks a job
    ``succeeded`` only once its adapter has been offered to the generators, so ``publish_state``
    (``published``, or ``failed``: retry with ``POST .../publish``) is settled by then."""
    return STATUS.get(job.status, "queued")


def job_object(job: tpb.Job) -> FineTuningJob:
    status = job_status(job)
    hyper = JobHyperparameters(
        n_epochs=_whole(job.hyperparameters.n_epochs),
        batch_size=_whole(job.hyperparameters.batch_size),
        learning_rate_multiplier=_number(job.hyperparameters.learning_rate_multiplier),
    )
    error = None
    if job.HasField("error") and job.error.code:
        error = JobError(code=job.error.code, message=job.error.message, param=job.error.param or None)
    return FineTuningJob(
        id=job.id,
        created_at=_seconds(job, "created_at") or 0,
        finished_at=_seconds(job, "finished_at") if status in FINAL else None,
        model=job.model,
        fine_tuned_model=job.fine_tuned_model or None if status == "succeeded" else None,
        organization_id=job.tenant,
        status=status,
        hyperparameters=hyper,
        method=JobMethod(type="supervised", supervised=SupervisedMethod(hyperparameters=hyper)),
        training_file=job.training_file,
        validation_file=job.validation_file or None,
        result_files=[],
        trained_tokens=job.trained_tokens if status == "succeeded" else None,
        error=error,
        seed=job.seed,
        user_provided_suffix=job.suffix or None,
        step=job.step,
        total_steps=job.total_steps,
        train_loss=job.train_loss or None,
        eval_loss=job.eval_loss or None,
        lora=JobLora(
            r=job.lora.r, alpha=job.lora.alpha, dropout=job.lora.dropout, target_modules=list(job.lora.target_modules)
        ),
        publish_state=PUBLISH.get(job.publish_state),
        publish_error=job.publish_error or None,
        cpu_seconds=round(job.cpu_seconds, 1),
    )


def event_id(job_id: str, seq: int) -> str:
    return f"{ids.FINE_TUNING_EVENT}{job_id.removeprefix(ids.FINE_TUNING_JOB)}-{seq}"


def event_seq(value: str) -> int:
    """The sequence number inside an event id (0 for anything else: from the start)."""
    tail = value.rsplit("-", 1)[-1]
    return int(tail) if value.startswith(ids.FINE_TUNING_EVENT) and tail.isdigit() else 0


Level = Literal["info", "warn", "error"]
Kind = Literal["message", "metrics"]


def _event_text(event: tpb.JobEvent) -> tuple[Level, Kind, str, dict[str, Any]]:
    """(level, type, message, data) of one trainer event."""
    kind = event.WhichOneof("event")
    if kind == "status":
        name = STATUS.get(event.status.status, "unknown")
        level: Level = "error" if name == "failed" else "info"
        text = f"Job {name}" + (f": {event.status.message}" if event.status.message else "")
        return level, "message", text, {"status": name}
    if kind == "started":
        s = event.started
        text = f"Training started: {s.train_examples} examples, {s.total_steps} steps"
        if s.resumed_from_step:
            text += f" (resumed from step {s.resumed_from_step})"
        data: dict[str, float] = {
            "train_examples": s.train_examples,
            "validation_examples": s.validation_examples,
            "total_steps": s.total_steps,
            "resumed_from_step": s.resumed_from_step,
        }
        return "info", "message", text, data
    if kind == "progress":
        p = event.progress
        data = {
            "step": p.step,
            "total_steps": p.total_steps,
            "epoch": p.epoch,
            "train_loss": p.train_loss,
            "learning_rate": p.learning_rate,
            "tokens_per_second": p.tokens_per_second,
            "eta_seconds": p.eta_seconds,
            "trained_tokens": p.trained_tokens,
            "cpu_seconds": p.cpu_seconds,
        }
        return "info", "metrics", f"Step {p.step}/{p.total_steps}: training loss={p.train_loss:.4f}", data
    if kind == "eval":
        return (
            "info",
            "metrics",
            f"Step {event.eval.step}: eval loss={event.eval.eval_loss:.4f}",
            {"step": event.eval.step, "eval_loss": event.eval.eval_loss},
        )
    if kind == "checkpoint":
        return "info", "message", f"Checkpoint saved at step {event.checkpoint.step}", {"step": event.checkpoint.step}
    if kind == "publish":
        pub = event.publish
        if pub.published:
            return "info", "message", f"Published {pub.model}", {"model": pub.model}
        return "warn", "message", f"Publishing failed: {pub.error}", {"error": pub.error}
    return "info", "message", event.message, {}


def event_object(event: tpb.JobEvent) -> FineTuningJobEvent:
    level, kind, message, data = _event_text(event)
    return FineTuningJobEvent(
        id=event_id(event.job_id, event.seq),
        created_at=event.created_at.seconds,
        level=level,
        type=kind,
        message=message,
        data=data,
    )


def checkpoint_object(job: tpb.Job, checkpoint: tpb.Checkpoint) -> FineTuningJobCheckpoint:
    model = job.fine_tuned_model or f"ft:{job.model}:{job.id}"
    return FineTuningJobCheckpoint(
        id=f"{ids.FINE_TUNING_CHECKPOINT}{job.id.removeprefix(ids.FINE_TUNING_JOB)}-{checkpoint.step}",
        created_at=checkpoint.created_at.seconds,
        fine_tuned_model_checkpoint=f"{model}:ckpt-step-{checkpoint.step}",
        fine_tuning_job_id=job.id,
        step_number=checkpoint.step,
        metrics=CheckpointMetrics(step=checkpoint.step),
    )


# Use cases


async def count_active_jobs(runtime: GatewayRuntime, tenant: str) -> int:
    """The tenant's jobs the trainer has not finished (all replicas share its queue), every page read."""
    count, token = 0, ""
    while True:
        response = await runtime.downstream.trainer.list_jobs(tenant, PAGE, token)
        count += sum(1 for job in response.jobs if job.status in ACTIVE)
        token = response.next_page_token
        if not token:
            return count


async def create_job(runtime: GatewayRuntime, tenant: str, body: CreateJob) -> FineTuningJob:
    """A job on the tenant's own fine-tune files; 429 while the tenant has its cap of active jobs
    (counting the creations in flight in every replica: see :mod:`ragtune_gateway.limits`). No
    database connection is held while the trainer is called."""
    for param in ("training_file", "validation_file"):
        file_id = getattr(body, param)
        if file_id:
            record = await files.get_file(runtime.pool, tenant, file_id)
            if record is None or record.purpose != "fine-tune":
                raise not_found("fine-tune file", file_id, param)
    request, settings = job_request(tenant, body), runtime.settings
    if not settings.max_active_jobs_per_tenant:
        return job_object(await runtime.downstream.trainer.create_job(request, fields=JOB_FIELDS))
    # the place outlives the counting calls and CreateJob's deadline; checked before CreateJob below
    ttl_s = 3 * settings.rpc_timeout_s + 30
    async with limits.reserved_place(runtime.pool, tenant, CAP_KIND, ttl_s) as place:
        held = await count_active_jobs(runtime, tenant) + place.others
        if held >= settings.max_active_jobs_per_tenant:
            what = "queued or running fine-tuning jobs (or jobs being created)"
            cap = settings.max_active_jobs_per_tenant
            raise limits.cap_reached(what, held, cap, CAP_SETTING, settings.cap_retry_after_s)
        if place.remaining_s() < settings.rpc_timeout_s + 5:  # the count took so long the place may lapse mid-call
            message = "The trainer service is answering too slowly; retry later."
            raise ApiError(503, message, code="unavailable", retry_after_s=RETRY_AFTER_S)
        job = await runtime.downstream.trainer.create_job(request, fields=JOB_FIELDS)
    return job_object(job)


async def list_jobs(runtime: GatewayRuntime, tenant: str, after: str, limit: int) -> ListPage[FineTuningJob]:
    """Newest first; ``after`` is the last job id of the previous page."""
    token = next_page_token([after], 1) if after else ""
    response = await runtime.downstream.trainer.list_jobs(tenant, limit, token, fields=JOB_FIELDS)
    return ListPage.of([job_object(j) for j in response.jobs], has_more=bool(response.next_page_token))


async def get_job(runtime: GatewayRuntime, tenant: str, job_id: str) -> FineTuningJob:
    return job_object(await runtime.downstream.trainer.get_job(tenant, job_id, missing=_missing(job_id)))


async def cancel_job(runtime: GatewayRuntime, tenant: str, job_id: str) -> FineTuningJob:
    return job_object(await runtime.downstream.trainer.cancel_job(tenant, job_id, missing=_missing(job_id)))


async def publish_job(runtime: GatewayRuntime, tenant: str, job_id: str) -> FineTuningJob:
    """Offers a succeeded job's adapter to the generators again: 400 unless the job succeeded, 503
    while no generator answers."""
    return job_object(await runtime.downstream.trainer.publish_job(tenant, job_id, missing=_missing(job_id)))


async def list_events(
    runtime: GatewayRuntime, tenant: str, job_id: str, after: str, limit: int
) -> ListPage[FineTuningJobEvent]:
    """Events oldest first after the event id ``after``: a finished job's stream ends by itself, a
    live one is read until it goes quiet."""
    trainer = runtime.downstream.trainer
    job = await trainer.get_job(tenant, job_id, missing=_missing(job_id))
    final = job_status(job) in FINAL
    timeout_s = runtime.settings.rpc_timeout_s
    events: list[tpb.JobEvent] = []
    async with trainer.watch_job(tenant, job.id, event_seq(after), timeout_s=timeout_s, missing=_missing(job_id)) as s:
        while len(events) <= limit:
            event = await s.next_within(None if final else (timeout_s if not events else IDLE_S))
            if event is None:
                break
            events.append(event)
    return ListPage.of([event_object(e) for e in events[:limit]], has_more=len(events) > limit)


async def follow_events(
    runtime: GatewayRuntime, tenant: str, key_hash: str, job_id: str, after: str
) -> StreamingResponse:
    """The job's events as server-sent events until it finishes: the job is looked up first (a
    missing one is a 404, not a stream), then the stream takes one of the key's stream slots (429
    beyond ``max_streams_per_key``). A failure mid-stream is one last ``error`` event."""
    job = await runtime.downstream.trainer.get_job(tenant, job_id, missing=_missing(job_id))
    release = runtime.streams.acquire(key_hash)
    return limits.limited_stream(_sse(runtime, tenant, job.id, event_seq(after)), release)


async def _sse(runtime: GatewayRuntime, tenant: str, job_id: str, after_seq: int) -> AsyncIterator[bytes]:
    # the watch starts with the first read: a response never sent opens no call
    stream = runtime.downstream.trainer.watch_job(tenant, job_id, after_seq, timeout_s=None, missing=_missing(job_id))
    async with stream:
        try:
            async for event in stream:
                yield f"data: {json.dumps(event_object(event).model_dump(mode='json'))}\n\n".encode()
        except ApiError as exc:
            yield f"data: {json.dumps(exc.body())}\n\n".encode()
            return
    yield b"data: [DONE]\n\n"


async def list_checkpoints(runtime: GatewayRuntime, tenant: str, job_id: str) -> ListPage[FineTuningJobCheckpoint]:
    trainer = runtime.downstream.trainer
    job = await trainer.get_job(tenant, job_id, missing=_missing(job_id))
    checkpoints = await trainer.list_checkpoints(tenant, job.id, missing=_missing(job_id))
    return ListPage.of([checkpoint_object(job, c) for c in checkpoints])
