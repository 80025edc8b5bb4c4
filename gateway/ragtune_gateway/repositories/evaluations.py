"""Evaluations run by the gateway (``gateway.evaluations``): the request, the progress, the outcome;
and the advisory lock that keeps two gateways from running the same evaluation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ragtune_common.statuses import FINAL

ACTIVE = ("queued", "running")
NOW = "now()"  # as a value of :func:`update`: the database's clock


@dataclass(frozen=True)
class EvaluationRow:
    id: str
    tenant_id: str
    status: str
    request: dict[str, Any]
    progress: dict[str, Any]
    report: dict[str, Any] | None
    promotion: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


_COLUMNS = "id, tenant_id, status, request, progress, report, promotion, error, created_at, started_at, finished_at"


async def count_active(conn: AsyncConnection, tenant: str) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM gateway.evaluations WHERE tenant_id = %s AND status = ANY(%s)", (tenant, list(ACTIVE))
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def insert(conn: AsyncConnection, evaluation_id: str, tenant: str, request: dict[str, Any]) -> EvaluationRow:
    """On the caller's connection: the one that holds the tenant's cap lock (``limits.tenant_cap``)."""
    cur = conn.cursor(row_factory=class_row(EvaluationRow))
    await cur.execute(
        f"INSERT INTO gateway.evaluations (id, tenant_id, status, request) VALUES (%s, %s, 'queued', %s)"
        f" RETURNING {_COLUMNS}",
        (evaluation_id, tenant, Jsonb(request)),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def delete_finished(pool: AsyncConnectionPool, tenant: str, evaluation_id: str) -> bool:
    """Delete the tenant's evaluation if it is finished (an active one stays)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM gateway.evaluations WHERE id = %s AND tenant_id = %s AND status = ANY(%s)",
            (evaluation_id, tenant, list(FINAL)),
        )
        return cur.rowcount > 0


async def existing_ids(pool: AsyncConnectionPool, ids: list[str]) -> set[str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM gateway.evaluations WHERE id = ANY(%s)", (ids,))
        return {str(r[0]) for r in await cur.fetchall()}


async def active_ids(pool: AsyncConnectionPool) -> list[str]:
    """Every tenant's queued or running evaluations, oldest first."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM gateway.evaluations WHERE status = ANY(%s) ORDER BY created_at, id", (list(ACTIVE),)
        )
        return [str(r[0]) for r in await cur.fetchall()]


async def get(pool: AsyncConnectionPool, tenant: str | None, evaluation_id: str) -> EvaluationRow | None:
    """The evaluation, of ``tenant`` (None: of any tenant)."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(EvaluationRow))
        await cur.execute(
            f"SELECT {_COLUMNS} FROM gateway.evaluations WHERE id = %s AND (%s::text IS NULL OR tenant_id = %s)",
            (evaluation_id, tenant, tenant),
        )
        return await cur.fetchone()


async def list_for(pool: AsyncConnectionPool, tenant: str, after: str, limit: int) -> list[EvaluationRow]:
    """Oldest first, paged by id."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(EvaluationRow))
        await cur.execute(
            f"SELECT {_COLUMNS} FROM gateway.evaluations WHERE tenant_id = %(t)s"
            " AND (%(a)s = '' OR (created_at, id) > (SELECT created_at, id FROM gateway.evaluations"
            "      WHERE tenant_id = %(t)s AND id = %(a)s))"
            " ORDER BY created_at, id LIMIT %(n)s",
            {"t": tenant, "a": after, "n": limit},
        )
        return await cur.fetchall()


async def update(pool: AsyncConnectionPool, evaluation_id: str, **changes: Any) -> None:
    """Set columns; a dict is stored as JSON, :data:`NOW` as the database's clock."""
    sets = ", ".join(f"{k} = now()" if v == NOW else f"{k} = %({k})s" for k, v in changes.items())
    params = {k: Jsonb(v) if isinstance(v, dict) else v for k, v in changes.items() if v != NOW}
    async with pool.connection() as conn:
        query = f"UPDATE gateway.evaluations SET {sets} WHERE id = %(_id)s"
        await conn.execute(query, {**params, "_id": evaluation_id})


@contextlib.asynccontextmanager
async def run_lock(pool: AsyncConnectionPool, evaluation_id: str) -> AsyncIterator[bool]:
    """Holds a session advisory lock on the evaluation while the block runs: True when this
    process got it, False when another gateway runs the evaluation."""
    key = f"ragtune-eval:{evaluation_id}"
    async with pool.connection() as conn:
        got = await (await conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,))).fetchone()
        if not got or not got[0]:
            yield False
            return
        try:
            yield True
        finally:
            with contextlib.suppress(Exception):
                await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
