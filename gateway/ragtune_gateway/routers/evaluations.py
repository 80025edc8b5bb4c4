"""``/v1/evaluations``: RAG vs fine-tuning vs both on the caller's QA data, run by the gateway
(ragtune extension). The dataset is a file uploaded with purpose ``evals`` (SQuAD JSON, or JSONL
of ``{question, answers, context?}``); the evaluation is checked when created (bad file or sizes:
400 naming the field) and then runs in the background; poll ``GET /v1/evaluations/{id}``."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse

from ragtune_eval.arms import ARMS
from ragtune_eval.dataset import DatasetError, QAItem, load_qa, split_dataset
from ragtune_gateway import aliases, evaluation_cleanup, evaluations, files, limits, store
from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.evaluations import EvaluationRunner
from ragtune_gateway.schemas.evaluations import CreateEvaluation

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"])


def get_runner(request: Request) -> EvaluationRunner:
    runner: EvaluationRunner = request.app.state.evaluations
    return runner


async def owned(runtime: Runtime, tenant: str, evaluation_id: str) -> evaluations.EvaluationRow:
    row = await evaluations.get(runtime.pool, tenant, evaluation_id)
    if row is None:
        raise not_found("evaluation", evaluation_id)
    return row


@router.post("")
async def create_evaluation(body: CreateEvaluation, request: Request, runtime: Runtime, tenant: TenantId) -> dict:
    record = await store.get_file(runtime.pool, tenant, body.file_id)
    if record is None:
        raise not_found("file", body.file_id, "file_id")
    if record.purpose != "evals":
        raise ApiError(400, f"File {body.file_id} has purpose '{record.purpose}', not 'evals'.", param="file_id")
    arms = [a for a in ARMS if a in body.arms]  # canonical order, no repeats
    if body.promote is not None:
        aliases.check_alias(body.promote.alias, "promote.alias")
        if body.promote.arm not in arms:
            raise ApiError(400, f"promote.arm {body.promote.arm!r} is not among the arms.", param="promote.arm")
    runner = get_runner(request)
    evaluation_id = store.new_id("eval_")
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
            if cap and (active := await evaluations.count_active(conn, tenant)) >= cap:
                what, setting = "queued or running evaluations", "RAGTUNE_GATEWAY_MAX_ACTIVE_EVALUATIONS_PER_TENANT"
                raise limits.cap_reached(what, active, cap, setting, runtime.settings.cap_retry_after_s)
            row = await evaluations.insert(conn, evaluation_id, tenant, saved)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    runner.submit(evaluation_id)
    return evaluations.evaluation_object(row)


def _copy_and_load(source: Path, target: Path) -> list[QAItem]:
    """The dataset is copied into the run (the file may be deleted later) and read (and then split)
    once here, so that a bad file or impossible sizes fail the request, not the run."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return load_qa(target)


@router.get("")
async def list_evaluations(
    runtime: Runtime,
    tenant: TenantId,
    after: str = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    rows = await evaluations.list_for(runtime.pool, tenant, after, limit + 1)
    data = [evaluations.evaluation_object(r) for r in rows[:limit]]
    return {"object": "list", "data": data, "has_more": len(rows) > limit}


@router.get("/{evaluation_id}")
async def get_evaluation(evaluation_id: str, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    return evaluations.evaluation_object(await owned(runtime, tenant, evaluation_id))


@router.post("/{evaluation_id}/cancel")
async def cancel_evaluation(evaluation_id: str, request: Request, runtime: Runtime, tenant: TenantId) -> dict:
    row = await owned(runtime, tenant, evaluation_id)
    if row.status in evaluations.FINAL:
        raise ApiError(400, f"Evaluation {evaluation_id} is already {row.status}.", param="evaluation_id")
    await get_runner(request).cancel(row)
    return evaluations.evaluation_object(await owned(runtime, tenant, evaluation_id))


@router.delete("/{evaluation_id}")
async def delete_evaluation(evaluation_id: str, request: Request, runtime: Runtime, tenant: TenantId) -> dict:
    """Deletes a finished evaluation with its run directory and the vector store and files it made
    (its adapters stay); 409 while it is queued or running: cancel it first."""
    row = await owned(runtime, tenant, evaluation_id)
    await evaluation_cleanup.delete_evaluation(runtime, row, get_runner(request).run_dir(row.id))
    return {"id": evaluation_id, "object": "evaluation.deleted", "deleted": True}


@router.get("/{evaluation_id}/report.md", response_class=PlainTextResponse)
async def evaluation_markdown(evaluation_id: str, request: Request, runtime: Runtime, tenant: TenantId) -> Any:
    return _report_file(request, await owned(runtime, tenant, evaluation_id), "report.md", "text/markdown")


@router.get("/{evaluation_id}/chart.png", response_class=FileResponse)
async def evaluation_chart(evaluation_id: str, request: Request, runtime: Runtime, tenant: TenantId) -> Any:
    return _report_file(request, await owned(runtime, tenant, evaluation_id), "chart.png", "image/png")


def _report_file(request: Request, row: evaluations.EvaluationRow, name: str, media_type: str) -> FileResponse:
    path = get_runner(request).run_dir(row.id) / name
    if row.status != "succeeded" or not path.is_file():
        raise ApiError(404, f"Evaluation {row.id} has no {name} (status {row.status}).", code="not_found")
    return FileResponse(path, media_type=media_type, headers={"X-Content-Type-Options": "nosniff"})
