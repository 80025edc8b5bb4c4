"""Trainer jobs, events and checkpoints in the OpenAI fine-tuning shapes."""

from __future__ import annotations

from typing import Any

from ragtune.trainer.v1 import trainer_pb2 as tpb
from ragtune_common.statuses import FINAL
from ragtune_gateway.auth import metadata
from ragtune_gateway.errors import rpc_errors
from ragtune_gateway.runtime import GatewayRuntime

STATUS = {
    tpb.JOB_STATUS_VALIDATING_FILES: "validating_files",
    tpb.JOB_STATUS_QUEUED: "queued",
    tpb.JOB_STATUS_RUNNING: "running",
    tpb.JOB_STATUS_SUCCEEDED: "succeeded",
    tpb.JOB_STATUS_FAILED: "failed",
    tpb.JOB_STATUS_CANCELLED: "cancelled",
}
PUBLISH = {
    tpb.PUBLISH_STATE_PENDING: "pending",
    tpb.PUBLISH_STATE_PUBLISHED: "published",
    tpb.PUBLISH_STATE_FAILED: "failed",
}


def _seconds(job: tpb.Job, name: str) -> int | None:
    return getattr(job, name).seconds if job.HasField(name) else None  # type: ignore[no-any-return]


def _number(value: tpb.NumberOrAuto) -> float | int | str:
    if value.WhichOneof("value") != "number":
        return "auto"
    return int(value.number) if value.number.is_integer() else value.number


ACTIVE = (tpb.JOB_STATUS_VALIDATING_FILES, tpb.JOB_STATUS_QUEUED, tpb.JOB_STATUS_RUNNING)
PAGE = 1000


async def count_active_jobs(runtime: GatewayRuntime, tenant: str) -> int:
    """The tenant's jobs the trainer has not finished (all replicas share its queue), every page read."""
    count, token = 0, ""
    while True:
        request = tpb.ListJobsRequest(tenant=tenant)
        request.page.page_size, request.page.page_token = PAGE, token
        with rpc_errors("trainer"):
            response = await runtime.downstream.trainer.ListJobs(
                request, timeout=runtime.settings.rpc_timeout_s, metadata=metadata()
            )
        count += sum(1 for job in response.jobs if job.status in ACTIVE)
        token = response.next_page_token
        if not token:
            return count


def job_status(job: tpb.Job) -> str:
    """The trainer's status, as is: a finished job never reads ``running``. The trainer marks a job
    ``succeeded`` only once its adapter has been offered to the generators, so ``publish_state``
    (``published``, or ``failed``: retry with ``POST .../publish``) is settled by then."""
    return STATUS.get(job.status, "queued")


def job_object(job: tpb.Job) -> dict[str, Any]:
    status = job_status(job)
    hyper = {
        "n_epochs": _number(job.hyperparameters.n_epochs),
        "batch_size": _number(job.hyperparameters.batch_size),
        "learning_rate_multiplier": _number(job.hyperparameters.learning_rate_multiplier),
    }
    error = None
    if job.HasField("error") and job.error.code:
        error = {"code": job.error.code, "message": job.error.message, "param": job.error.param or None}
    return {
        "id": job.id,
        "object": "fine_tuning.job",
        "created_at": _seconds(job, "created_at") or 0,
        "finished_at": _seconds(job, "finished_at") if status in FINAL else None,
        "model": job.model,
        "fine_tuned_model": job.fine_tuned_model or None if status == "succeeded" else None,
        "organization_id": job.tenant,
        "status": status,
        "hyperparameters": hyper,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
        "training_file": job.training_file,
        "validation_file": job.validation_file or None,
        "result_files": [],
        "trained_tokens": job.trained_tokens if status == "succeeded" else None,
        "error": error,
        "seed": job.seed,
        "user_provided_suffix": job.suffix or None,
        "estimated_finish": None,
        "integrations": None,
        "metadata": None,
        # ragtune extensions
        "step": job.step,
        "total_steps": job.total_steps,
        "train_loss": job.train_loss or None,
        "eval_loss": job.eval_loss or None,
        "lora": {
            "r": job.lora.r,
            "alpha": job.lora.alpha,
            "dropout": job.lora.dropout,
            "target_modules": list(job.lora.target_modules),
        },
        "publish_state": PUBLISH.get(job.publish_state),
        "publish_error": job.publish_error or None,
        "cpu_seconds": round(job.cpu_seconds, 1),
    }


def event_id(job_id: str, seq: int) -> str:
    return f"ftevent-{job_id.removeprefix('ftjob-')}-{seq}"


def event_seq(value: str) -> int:
    """The sequence number inside an event id (0 for anything else: from the start)."""
    tail = value.rsplit("-", 1)[-1]
    return int(tail) if value.startswith("ftevent-") and tail.isdigit() else 0


def _event_text(event: tpb.JobEvent) -> tuple[str, str, str, dict[str, Any]]:
    """(level, type, message, data) of one trainer event."""
    kind = event.WhichOneof("event")
    if kind == "status":
        name = STATUS.get(event.status.status, "unknown")
        level = "error" if name == "failed" else "info"
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


def event_object(event: tpb.JobEvent) -> dict[str, Any]:
    level, kind, message, data = _event_text(event)
    return {
        "id": event_id(event.job_id, event.seq),
        "object": "fine_tuning.job.event",
        "created_at": event.created_at.seconds,
        "level": level,
        "type": kind,
        "message": message,
        "data": data,
    }


def checkpoint_object(job: tpb.Job, checkpoint: tpb.Checkpoint) -> dict[str, Any]:
    model = job.fine_tuned_model or f"ft:{job.model}:{job.id}"
    return {
        "id": f"ftckpt-{job.id.removeprefix('ftjob-')}-{checkpoint.step}",
        "object": "fine_tuning.job.checkpoint",
        "created_at": checkpoint.created_at.seconds,
        "fine_tuned_model_checkpoint": f"{model}:ckpt-step-{checkpoint.step}",
        "fine_tuning_job_id": job.id,
        "step_number": checkpoint.step,
        "metrics": {"step": checkpoint.step},
    }
