"""Conversions between the trainer's rows and its protobuf messages."""

from __future__ import annotations

from google.protobuf import json_format

from ragtune.trainer.v1 import trainer_pb2 as pb
from ragtune_common.protoconv import to_timestamp
from ragtune_trainer.datasets import DatasetFormat, ValidationResult
from ragtune_trainer.jobspec import JobRequest
from ragtune_trainer.store import CheckpointRow, DatasetRow, EventRow, JobRow

STATUS = {
    "validating_files": pb.JOB_STATUS_VALIDATING_FILES,
    "queued": pb.JOB_STATUS_QUEUED,
    "running": pb.JOB_STATUS_RUNNING,
    "succeeded": pb.JOB_STATUS_SUCCEEDED,
    "failed": pb.JOB_STATUS_FAILED,
    "cancelled": pb.JOB_STATUS_CANCELLED,
}
PUBLISH = {
    "pending": pb.PUBLISH_STATE_PENDING,
    "published": pb.PUBLISH_STATE_PUBLISHED,
    "failed": pb.PUBLISH_STATE_FAILED,
}
FORMAT = {
    DatasetFormat.CHAT: pb.DATASET_FORMAT_CHAT,
    DatasetFormat.PROMPT_COMPLETION: pb.DATASET_FORMAT_PROMPT_COMPLETION,
}
FORMAT_IN = {value: key for key, value in FORMAT.items()}


def _number(value: pb.NumberOrAuto) -> float | None:
    return value.number if value.WhichOneof("value") == "number" else None


def job_request(request: pb.CreateJobRequest) -> JobRequest:
    hp, lora = request.hyperparameters, request.lora
    return JobRequest(
        n_epochs=_number(hp.n_epochs),
        batch_size=_number(hp.batch_size),
        learning_rate_multiplier=_number(hp.learning_rate_multiplier),
        lora_r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout if lora.HasField("dropout") else None,
        target_modules=tuple(lora.target_modules),
        suffix=request.suffix,
        seed=request.seed if request.HasField("seed") else None,
        max_seq_length=request.max_seq_length,
        validation_fraction=request.validation_fraction if request.HasField("validation_fraction") else None,
        eval_interval_steps=request.eval_interval_steps,
        early_stopping_patience=request.early_stopping_patience,
        checkpoint_interval_steps=request.checkpoint_interval_steps,
    )


def dataset_pb(row: DatasetRow) -> pb.Dataset:
    return pb.Dataset(
        id=row.id,
        tenant=row.tenant,
        filename=row.filename,
        format=FORMAT[DatasetFormat(row.format)],
        example_count=row.example_count,
        byte_count=row.byte_count,
        token_count=row.token_count,
        max_example_tokens=row.max_example_tokens,
        source=row.source,
        created_at=to_timestamp(row.created_at),
    )


def report_pb(result: ValidationResult) -> pb.ValidationReport:
    return pb.ValidationReport(
        valid=result.valid,
        errors=[pb.LineError(line=e.line, field=e.field, reason=e.reason) for e in result.errors],
        example_count=len(result.examples),
        token_count=result.token_count,
        trainable_token_count=result.trainable_token_count,
        max_example_tokens=result.max_example_tokens,
        format=FORMAT[result.format] if result.format else pb.DATASET_FORMAT_UNSPECIFIED,
    )


def job_pb(row: JobRow) -> pb.Job:
    c = row.config
    job = pb.Job(
        id=row.id,
        tenant=row.tenant,
        model=row.base_model,
        status=STATUS[row.status],
        training_file=row.training_file,
        validation_file=row.validation_file or "",
        validation_fraction=c.validation_fraction,
        hyperparameters=pb.Hyperparameters(
            n_epochs=pb.NumberOrAuto(number=c.n_epochs),
            batch_size=pb.NumberOrAuto(number=c.batch_size),
            learning_rate_multiplier=pb.NumberOrAuto(number=c.learning_rate_multiplier),
        ),
        lora=pb.LoraConfig(r=c.lora_r, alpha=c.lora_alpha, dropout=c.lora_dropout, target_modules=c.target_modules),
        suffix=c.suffix,
        seed=c.seed,
        max_seq_length=c.max_seq_length,
        eval_interval_steps=c.eval_interval_steps,
        early_stopping_patience=c.early_stopping_patience,
        checkpoint_interval_steps=c.checkpoint_interval_steps,
        fine_tuned_model=row.fine_tuned_model or "",
        created_at=to_timestamp(row.created_at),
        step=row.step,
        total_steps=row.total_steps,
        trained_tokens=row.trained_tokens,
        trained_token_fraction=row.trained_token_fraction,
        train_loss=row.train_loss,
        eval_loss=row.eval_loss,
        adapter_path=row.adapter_path or "",
        publish_state=PUBLISH[row.publish_state],
        publish_error=row.publish_error,
        resume_count=row.resume_count,
        cpu_seconds=row.cpu_seconds,
        replica=row.lease_owner or "",
    )
    if row.error:
        job.error.CopyFrom(pb.JobError(**row.error))
    if row.started_at:
        job.started_at.CopyFrom(to_timestamp(row.started_at))
    if row.finished_at:
        job.finished_at.CopyFrom(to_timestamp(row.finished_at))
    return job


def event_pb(row: EventRow) -> pb.JobEvent:
    event = pb.JobEvent(job_id=row.job_id, seq=row.seq, created_at=to_timestamp(row.created_at))
    if row.kind == "message":
        event.message = str(row.data.get("message", ""))
    elif row.kind == "status":
        event.status.CopyFrom(pb.StatusChange(status=STATUS[row.data["status"]], message=row.data.get("message", "")))
    else:
        json_format.ParseDict(row.data, getattr(event, row.kind), ignore_unknown_fields=True)
    return event


def checkpoint_pb(row: CheckpointRow) -> pb.Checkpoint:
    return pb.Checkpoint(step=row.step, path=row.path, created_at=to_timestamp(row.created_at))
