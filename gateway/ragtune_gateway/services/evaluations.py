"""Evaluations run by the gateway itself (``/v1/evaluations``): the same four-arm QA evaluation as
``ragtune eval squad`` (the harness of :mod:`ragtune_eval`), driven from inside the gateway through
its own REST API.

The use cases check a request (the file, the sizes, the alias) before anything is stored, so a bad
one fails with the field named and leaves nothing behind; list, get, cancel and delete what a
tenant owns; and serve the report's files. Everything an evaluation is lives in PostgreSQL (its
dataset, its record, its report), so any gateway replica answers any of these requests. What an
evaluation made goes with it on delete: the vector store and the context files it made, the row with
its record and files; its adapters stay (they are models the tenant may use or have promoted). The
:class:`EvaluationWorker` that runs them lives in :mod:`ragtune_gateway.services.evaluation_worker`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import cast

from ragtune_common.statuses import FINAL
from ragtune_eval.arms import ARMS
from ragtune_eval.dataset import DatasetError, parse_qa, split_dataset
from ragtune_gateway import ids, limits
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.repositories import evaluations as repository
from ragtune_gateway.repositories import files as file_records
from ragtune_gateway.repositories.evaluations import EvaluationRow
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.evaluations import (
    CreateEvaluation,
    Evaluation,
    EvaluationDeleted,
    EvaluationError,
    EvaluationList,
    EvaluationProgress,
    EvaluationStatus,
)
from ragtune_gateway.services import files, fine_tuning
from ragtune_gateway.services.aliases import check_alias
from ragtune_gateway.services.evaluation_worker import REPORT_FILES, EvaluationWorker

log = logging.getLogger(__name__)


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


def evaluation_object(row: EvaluationRow) -> Evaluation:
    report = row.report
    if report and isinstance(report.get("arms"), dict):  # jsonb keeps no key order: the arms' own
        arms = report["arms"]
        report = {**report, "arms": {a: arms[a] for a in row.request.get("arms", []) if a in arms}}
    return Evaluation(
        id=row.id,
        status=cast(EvaluationStatus, row.status),  # the table CHECKs the same five
        created_at=int(row.created_at.timestamp()),
        started_at=_ts(row.started_at),
        finished_at=_ts(row.finished_at),
        request=row.request,
        progress=EvaluationProgress.model_validate(row.progress),
        report=report,
        promotion=row.promotion,
        error=EvaluationError(message=row.error) if row.error else None,
    )


async def owned(runtime: GatewayRuntime, tenant: str, evaluation_id: str) -> EvaluationRow:
    row = await repository.get(runtime.pool, tenant, evaluation_id)
    if row is None:
        raise not_found("evaluation", evaluation_id)
    return row


async def create(runtime: GatewayRuntime, worker: EvaluationWorker, tenant: str, body: CreateEvaluation) -> Evaluation:
    record = await file_records.get_file(runtime.pool, tenant, body.file_id)
    if record is None:
        raise not_found("file", body.file_id, "file_id")
    if record.purpose != "evals":
        raise ApiError(400, f"File {body.file_id} has purpose '{record.purpose}', not 'evals'.", param="file_id")
    arms = [a for a in ARMS if a in body.arms]  # canonical order, no repeats
    if body.promote is not None:
        check_alias(body.promote.alias, "promote.alias")
        if body.promote.arm not in arms:
            raise ApiError(400, f"promote.arm {body.promote.arm!r} is not among the arms.", param="promote.arm")
    evaluation_id = ids.new_id(ids.EVALUATION)
    data = await files.read_bytes(runtime, record)
    suffix = ".jsonl" if record.filename.lower().endswith(".jsonl") else ".json"
    dataset = f"dataset{suffix}"
    param = "file_id"  # until the file reads as a QA dataset; then the sizes are at fault
    try:  # read (and split) once here, off the event loop: a bad file or impossible sizes fail the request
        items = await asyncio.to_thread(parse_qa, data, record.filename)
        param = "train"
        split_dataset(items, body.train, body.test, body.seed, body.train_sample)
    except DatasetError as exc:
        raise ApiError(400, str(exc), param=param) from None
    saved = {**body.model_dump(), "arms": arms, "dataset_name": dataset, "filename": record.filename}
    cap = runtime.settings.max_active_evaluations_per_tenant
    async with limits.tenant_cap(runtime.pool, tenant, "evaluations") as conn:  # counted in every replica
        if cap and (active := await repository.count_active(conn, tenant)) >= cap:
            what, setting = "queued or running evaluations", "RAGTUNE_GATEWAY_MAX_ACTIVE_EVALUATIONS_PER_TENANT"
            raise limits.cap_reached(what, active, cap, setting, runtime.settings.cap_retry_after_s)
        # the evaluation keeps its own copy of the dataset: the file may be deleted meanwhile
        row = await repository.insert(conn, evaluation_id, tenant, saved, {dataset: ("application/json", data)})
    worker.poke()
    return evaluation_object(row)


async def list_page(runtime: GatewayRuntime, tenant: str, after: str, limit: int) -> EvaluationList:
    rows = await repository.list_for(runtime.pool, tenant, after, limit + 1)
    return EvaluationList.of([evaluation_object(r) for r in rows[:limit]], has_more=len(rows) > limit)


async def get(runtime: GatewayRuntime, tenant: str, evaluation_id: str) -> Evaluation:
    return evaluation_object(await owned(runtime, tenant, evaluation_id))


async def cancel(runtime: GatewayRuntime, worker: EvaluationWorker, tenant: str, evaluation_id: str) -> Evaluation:
    """Cancel a queued or running evaluation, whichever replica runs it: the row says so first (the
    worker's lease ends with it, so none of its writes lands after), then this replica's run stops
    at once if it is here (another's at its next write or lease renewal), then the fine-tuning jobs
    it started and that have not finished are cancelled."""
    cancelled = await repository.cancel(runtime.pool, tenant, evaluation_id)
    if cancelled is None:
        row = await owned(runtime, tenant, evaluation_id)
        raise ApiError(400, f"Evaluation {evaluation_id} is already {row.status}.", param="evaluation_id")
    await worker.stop(evaluation_id)
    jobs = cancelled.state.get("jobs") or {}
    for job in jobs.values():
        if job.get("job_id") and job.get("status") not in FINAL:
            with contextlib.suppress(ApiError):  # finished or gone meanwhile
                await fine_tuning.cancel_job(runtime, tenant, str(job["job_id"]))
    return await get(runtime, tenant, evaluation_id)


async def delete(runtime: GatewayRuntime, tenant: str, evaluation_id: str) -> EvaluationDeleted:
    """Delete a finished evaluation and what it made (409 while it is queued or running).

    Order, so that nothing is left half-deleted: the store and files first (a retriever that is
    down answers 503 and the evaluation is still there to delete again), then the row, with its
    record and files."""
    row = await owned(runtime, tenant, evaluation_id)
    if row.status not in FINAL:
        message = f"Evaluation {row.id} is {row.status}: cancel it first."
        raise ApiError(409, message, param="evaluation_id", code="evaluation_active")
    made = row.state.get("store") or {}
    if made.get("id"):
        gone = not_found("vector store", made["id"])
        try:
            await runtime.downstream.retriever.delete_collection(row.tenant_id, made["id"], missing=gone)
        except ApiError as exc:
            if exc is not gone:  # already deleted by the tenant: fine
                raise
    file_ids = [str(f) for f in (made.get("files") or {}).values()]
    if file_ids:
        await file_records.delete_files(runtime.pool, row.tenant_id, file_ids)
    if not await repository.delete_finished(runtime.pool, row.tenant_id, row.id):
        raise ApiError(409, f"Evaluation {row.id} changed meanwhile; retry.", code="evaluation_active")
    return EvaluationDeleted(id=evaluation_id)


async def report_file(runtime: GatewayRuntime, tenant: str, evaluation_id: str, name: str) -> bytes:
    """A file of a succeeded evaluation's report (one of :data:`REPORT_FILES`)."""
    row = await owned(runtime, tenant, evaluation_id)
    found = await repository.get_file(runtime.pool, row.id, name) if name in REPORT_FILES else None
    if row.status != "succeeded" or found is None:
        raise ApiError(404, f"Evaluation {row.id} has no {name} (status {row.status}).", code="not_found")
    return found[1]
