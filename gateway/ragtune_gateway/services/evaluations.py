"""Evaluations run by the gateway itself (``/v1/evaluations``): the same four-arm QA evaluation as
``ragtune eval squad`` (the harness of :mod:`ragtune_eval`), driven from inside the gateway through
its own REST API.

The use cases check a request (the file, the sizes, the alias) before anything is stored, so a bad
one fails with the field named and leaves nothing behind; list, get, cancel and delete what a
tenant owns; and serve the report's files. What an evaluation made goes with it on delete: the
vector store and the context files it made, the row, the run directory; its adapters stay (they
are models the tenant may use or have promoted). The background :class:`EvaluationRunner` lives
in :mod:`ragtune_gateway.services.evaluation_runner`."""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from ragtune_common.statuses import FINAL
from ragtune_eval.arms import ARMS
from ragtune_eval.dataset import DatasetError, QAItem, load_qa, split_dataset
from ragtune_eval.report import CHART_NAME, HTML_NAME
from ragtune_eval.rundir import RunDir
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
from ragtune_gateway.services import files
from ragtune_gateway.services.aliases import check_alias
from ragtune_gateway.services.evaluation_runner import EvaluationRunner

REPORT_FILES = {"report.md": "text/markdown", CHART_NAME: "image/svg+xml", HTML_NAME: "text/html"}


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


async def create(runtime: GatewayRuntime, runner: EvaluationRunner, tenant: str, body: CreateEvaluation) -> Evaluation:
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
    run_dir = runner.run_dir(evaluation_id)
    suffix = ".jsonl" if record.filename.lower().endswith(".jsonl") else ".json"
    dataset = run_dir / f"dataset{suffix}"
    param = "file_id"  # until the file reads as a QA dataset; then the sizes are at fault
    try:
        items = await asyncio.to_thread(_copy_and_load, files.file_path(runtime, record.id), dataset)
        param = "train"
        split_dataset(items, body.train, body.test, body.seed, body.train_sample)
    except DatasetError as exc:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise ApiError(400, str(exc).replace(str(dataset), record.filename), param=param) from None
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    saved = {**body.model_dump(), "arms": arms, "dataset_name": dataset.name, "filename": record.filename}
    cap = runtime.settings.max_active_evaluations_per_tenant
    try:
        async with limits.tenant_cap(runtime.pool, tenant, "evaluations") as conn:  # counted in every replica
            if cap and (active := await repository.count_active(conn, tenant)) >= cap:
                what, setting = "queued or running evaluations", "RAGTUNE_GATEWAY_MAX_ACTIVE_EVALUATIONS_PER_TENANT"
                raise limits.cap_reached(what, active, cap, setting, runtime.settings.cap_retry_after_s)
            row = await repository.insert(conn, evaluation_id, tenant, saved)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    runner.submit(evaluation_id)
    return evaluation_object(row)


def _copy_and_load(source: Path, target: Path) -> list[QAItem]:
    """The dataset is copied into the run (the file may be deleted later) and read (and then split)
    once here, so that a bad file or impossible sizes fail the request, not the run."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return load_qa(target)


async def list_page(runtime: GatewayRuntime, tenant: str, after: str, limit: int) -> EvaluationList:
    rows = await repository.list_for(runtime.pool, tenant, after, limit + 1)
    return EvaluationList.of([evaluation_object(r) for r in rows[:limit]], has_more=len(rows) > limit)


async def get(runtime: GatewayRuntime, tenant: str, evaluation_id: str) -> Evaluation:
    return evaluation_object(await owned(runtime, tenant, evaluation_id))


async def cancel(runtime: GatewayRuntime, runner: EvaluationRunner, tenant: str, evaluation_id: str) -> Evaluation:
    row = await owned(runtime, tenant, evaluation_id)
    if row.status in FINAL:
        raise ApiError(400, f"Evaluation {evaluation_id} is already {row.status}.", param="evaluation_id")
    await runner.cancel(row)
    return await get(runtime, tenant, evaluation_id)


async def delete(
    runtime: GatewayRuntime, runner: EvaluationRunner, tenant: str, evaluation_id: str
) -> EvaluationDeleted:
    """Delete a finished evaluation and what it made (409 while it is queued or running).

    Order, so that nothing is left half-deleted: the store and files first (a retriever that is
    down answers 503 and the evaluation is still there to delete again), then the row, then the
    directory; a directory whose row is gone (a gateway stopped between the two) is swept at the
    next start (:meth:`EvaluationRunner.resume`)."""
    row = await owned(runtime, tenant, evaluation_id)
    if row.status not in FINAL:
        message = f"Evaluation {row.id} is {row.status}: cancel it first."
        raise ApiError(409, message, param="evaluation_id", code="evaluation_active")
    run_dir = runner.run_dir(row.id)
    made = (await asyncio.to_thread(_run_state, run_dir)).get("store") or {}
    if made.get("id"):
        gone = not_found("vector store", made["id"])
        try:
            await runtime.downstream.retriever.delete_collection(row.tenant_id, made["id"], missing=gone)
        except ApiError as exc:
            if exc is not gone:  # already deleted by the tenant: fine
                raise
    file_ids = [str(f) for f in (made.get("files") or {}).values()]
    if file_ids:
        for file_id in await file_records.delete_files(runtime.pool, row.tenant_id, file_ids):
            files.remove_bytes(runtime, file_id)
    if not await repository.delete_finished(runtime.pool, row.tenant_id, row.id):
        raise ApiError(409, f"Evaluation {row.id} changed meanwhile; retry.", code="evaluation_active")
    await asyncio.to_thread(shutil.rmtree, run_dir, True)
    return EvaluationDeleted(id=evaluation_id)


def _run_state(run_dir: Path) -> dict[str, Any]:
    return RunDir(run_dir).state if run_dir.is_dir() else {}


async def report_file(
    runtime: GatewayRuntime, runner: EvaluationRunner, tenant: str, evaluation_id: str, name: str
) -> Path:
    """A file of a succeeded evaluation's report (one of :data:`REPORT_FILES`)."""
    row = await owned(runtime, tenant, evaluation_id)
    path = runner.run_dir(row.id) / name
    if row.status != "succeeded" or not path.is_file():
        raise ApiError(404, f"Evaluation {row.id} has no {name} (status {row.status}).", code="not_found")
    return path
