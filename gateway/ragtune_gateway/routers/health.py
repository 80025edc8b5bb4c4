"""``/healthz`` (the process answers), ``/readyz`` (the database and every downstream service
report SERVING), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ragtune_gateway.auth import Runtime, is_admin
from ragtune_gateway.schemas.health import Liveness, Readiness
from ragtune_gateway.services import health as service

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Liveness)
async def healthz() -> Liveness:
    return Liveness()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "Not ready"}})
async def readyz(runtime: Runtime, response: Response) -> Readiness:
    """200 when the database and every downstream service serve, else 503 (the same body)."""
    readiness = await service.readiness(runtime)
    response.status_code = 200 if readiness.status == "ready" else 503
    return readiness


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request, runtime: Runtime) -> Response:
    """Open to scrapers; series that name a tenant's models are added only for the admin key."""
    body = generate_latest(runtime.metrics.registry)
    if is_admin(request, runtime):
        body += generate_latest(runtime.metrics.admin_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
