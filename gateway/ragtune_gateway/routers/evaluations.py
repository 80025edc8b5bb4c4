"""``/v1/evaluations``: RAG vs fine-tuning vs both on the caller's QA data, run by the gateway
(ragtune extension). The dataset is a file uploaded with purpose ``evals`` (SQuAD JSON, or JSONL
of ``{question, answers, context?}``); the evaluation is checked when created (bad file or sizes:
400 naming the field) and then runs in the background; poll ``GET /v1/evaluations/{id}``."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from ragtune_eval.report import CHART_NAME, HTML_NAME
from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.schemas.common import PathId
from ragtune_gateway.schemas.evaluations import CreateEvaluation, Evaluation, EvaluationDeleted, EvaluationList
from ragtune_gateway.services import evaluations as service
from ragtune_gateway.services.evaluation_worker import EvaluationWorker

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"])
# The chart (SVG) and the HTML report: served so that a browser opening them runs nothing and loads nothing
CHART_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}


def get_worker(request: Request) -> EvaluationWorker:
    worker: EvaluationWorker = request.app.state.evaluations
    return worker


Worker = Annotated[EvaluationWorker, Depends(get_worker)]


@router.post("", response_model=Evaluation)
async def create_evaluation(body: CreateEvaluation, runtime: Runtime, worker: Worker, tenant: TenantId) -> Evaluation:
    return await service.create(runtime, worker, tenant, body)


@router.get("", response_model=EvaluationList)
async def list_evaluations(
    runtime: Runtime, tenant: TenantId, after: str = "", limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> EvaluationList:
    return await service.list_page(runtime, tenant, after, limit)


@router.get("/{evaluation_id}", response_model=Evaluation)
async def get_evaluation(evaluation_id: PathId, runtime: Runtime, tenant: TenantId) -> Evaluation:
    return await service.get(runtime, tenant, evaluation_id)


@router.post("/{evaluation_id}/cancel", response_model=Evaluation)
async def cancel_evaluation(evaluation_id: PathId, runtime: Runtime, worker: Worker, tenant: TenantId) -> Evaluation:
    return await service.cancel(runtime, worker, tenant, evaluation_id)


@router.delete("/{evaluation_id}", response_model=EvaluationDeleted)
async def delete_evaluation(evaluation_id: PathId, runtime: Runtime, tenant: TenantId) -> EvaluationDeleted:
    """Deletes a finished evaluation with its record and report and the vector store and files it
    made (its adapters stay); 409 while it is queued or running: cancel it first."""
    return await service.delete(runtime, tenant, evaluation_id)


@router.get(
    "/{evaluation_id}/report.md",
    response_class=Response,
    responses={200: {"content": {"text/markdown": {}}}},
)
async def evaluation_markdown(evaluation_id: PathId, runtime: Runtime, tenant: TenantId) -> Response:
    content = await service.report_file(runtime, tenant, evaluation_id, "report.md")
    return Response(content, media_type="text/markdown", headers={"X-Content-Type-Options": "nosniff"})


@router.get(
    f"/{{evaluation_id}}/{CHART_NAME}",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}},
)
async def evaluation_chart(evaluation_id: PathId, runtime: Runtime, tenant: TenantId) -> Response:
    """F1 against median latency per arm (bar to the p95), as SVG."""
    content = await service.report_file(runtime, tenant, evaluation_id, CHART_NAME)
    return Response(content, media_type="image/svg+xml", headers=CHART_HEADERS)


@router.get(
    f"/{{evaluation_id}}/{HTML_NAME}",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}}},
)
async def evaluation_html(evaluation_id: PathId, runtime: Runtime, tenant: TenantId) -> Response:
    """The report as one self-contained page: the arms with their intervals, the charts (quality
    against latency, paired differences, cost) and example answers. It runs no script."""
    content = await service.report_file(runtime, tenant, evaluation_id, HTML_NAME)
    return Response(content, media_type="text/html; charset=utf-8", headers=CHART_HEADERS)


@router.get("/{evaluation_id}/chart.png", status_code=308, response_class=RedirectResponse)
async def evaluation_chart_png(evaluation_id: PathId, tenant: TenantId) -> RedirectResponse:
    """Where the chart was before it became SVG: a permanent redirect to ``chart.svg``."""
    return RedirectResponse(f"/v1/evaluations/{quote(evaluation_id, safe='')}/{CHART_NAME}", status_code=308)
