"""``/healthz`` and ``/readyz`` bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ragtune_gateway.schemas.common import ResponseModel


class Liveness(ResponseModel):
    status: Literal["ok"] = "ok"


class ReadinessChecks(ResponseModel):
    """Each dependency's state: ``SERVING``, ``NOT_SERVING`` or ``UNREACHABLE``."""

    database: str
    retriever: str
    generator: str
    trainer: str


class Readiness(ResponseModel):
    status: Literal["ready", "not ready"] = Field(description="`ready` (200) when every check is SERVING, else 503")
    checks: ReadinessChecks
