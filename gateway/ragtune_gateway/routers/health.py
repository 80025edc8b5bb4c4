"""``/healthz`` (the process answers), ``/readyz`` (the database and every downstream service
report SERVING), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ragtune_gateway.auth import Runtime, is_admin

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: Runtime) -> JSONResponse:
    timeout = runtime.settings.health_timeout_s

    async def database() -> str:
        try:
            async with asyncio.timeout(timeout), runtime.pool.connection() as conn:
                await conn.execute("SELECT 1")
            return "SERVING"
        except Exception:
            return "UNREACHABLE"

    services, db = await asyncio.gather(runtime.downstream.health(timeout), database())
    checks = {"database": db, **services}
    ready = all(status == "SERVING" for status in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/metrics")
async def metrics(request: Request, runtime: Runtime) -> Response:
    """Open to scrapers; series that name a tenant's models are added only for the admin key."""
    body = generate_latest(runtime.metrics.registry)
    if is_admin(request, runtime):
        body += generate_latest(runtime.metrics.admin_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
