"""Readiness: the database and every downstream service report SERVING."""

from __future__ import annotations

import asyncio

from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.health import Readiness, ReadinessChecks


async def readiness(runtime: GatewayRuntime) -> Readiness:
    """Each dependency's state (within ``health_timeout_s``), ``ready`` when every one serves."""
    timeout = runtime.settings.health_timeout_s

    async def database() -> str:
        try:
            async with asyncio.timeout(timeout), runtime.pool.connection() as conn:
                await conn.execute("SELECT 1")
            return "SERVING"
        except Exception:
            return "UNREACHABLE"

    services, db = await asyncio.gather(runtime.downstream.health(timeout), database())
    checks = ReadinessChecks(database=db, **services)
    ready = all(status == "SERVING" for status in checks.model_dump().values())
    return Readiness(status="ready" if ready else "not ready", checks=checks)
