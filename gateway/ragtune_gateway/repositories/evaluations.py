"""Evaluations run by the gateway (``gateway.evaluations``, SQL only): the request, the progress, the
outcome; the run's record (``config``, ``state``, ``gateway.evaluation_results``), its files
(``gateway.evaluation_files``: the dataset it was created with, the report it made); and the lease
under which one worker at a time runs it.

Every write a worker makes is *fenced*: it applies only while the row is ``running`` under that
worker's lease, so a worker that lost its lease (it stalled and another took over) or whose
evaluation was cancelled or deleted meanwhile changes nothing, and learns it (False)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ragtune_common.statuses import FINAL
from ragtune_gateway.repositories.leases import LeasedTable

ACTIVE = ("queued", "running")
LEASES = LeasedTable("gateway.evaluations", "queued", "running", started_column="started_at")
HELD = LEASES.held  # the fence of a worker's writes


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
    config: dict[str, Any] | None
    state: dict[str, Any]
    attempts: int


_COLUMNS = (
    "id, tenant_id, status, request, progress, report, promotion, error, created_at, started_at, finished_at,"
    " config, state, attempts"
)


async def count_active(conn: AsyncConnection, tenant: str) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM gateway.evaluations WHERE tenant_id = %s AND status = ANY(%s)", (tenant, list(ACTIVE))
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def insert(
    conn: AsyncConnection,
    evaluation_id: str,
    tenant: str,
    request: dict[str, Any],
    files: dict[str, tuple[str, bytes]],
) -> EvaluationRow:
    """The row, queued, and its input ``files`` (name -> (media type, bytes)); on the caller's
    connection: the one that holds the tenant's cap lock (``limits.tenant_cap``), in its transaction."""
    cur = conn.cursor(row_factory=class_row(EvaluationRow))
    await cur.execute(
        f"INSERT INTO gateway.evaluations (id, tenant_id, status, request) VALUES (%s, %s, 'queued', %s)"
        f" RETURNING {_COLUMNS}",
        (evaluation_id, tenant, Jsonb(request)),
    )
    row = await cur.fetchone()
    assert row is not None
    for name, (media_type, content) in files.items():
        await _put_file(conn, evaluation_id, name, media_type, content)
    return row


async def _put_file(conn: AsyncConnection, evaluation_id: str, name: str, media_type: str, content: bytes) -> None:
    await conn.execute(
        "INSERT INTO gateway.evaluation_files (evaluation_id, name, media_type, content) VALUES (%s, %s, %s, %b)"
        " ON CONFLICT (evaluation_id, name) DO UPDATE SET media_type = excluded.media_type, content = excluded.content",
        (evaluation_id, name, media_type, content),
    )


async def get_file(pool: AsyncConnectionPool, evaluation_id: str, name: str) -> tuple[str, bytes] | None:
    """(media type, bytes) of one of the evaluation's files."""
    async with pool.connection() as conn:
        cur = conn.cursor(binary=True)
        await cur.execute(
            "SELECT media_type, content FROM gateway.evaluation_files WHERE evaluation_id = %s AND name = %s",
            (evaluation_id, name),
        )
        row = await cur.fetchone()
    return (str(row[0]), bytes(row[1])) if row else None


async def delete_finished(pool: AsyncConnectionPool, tenant: str, evaluation_id: str) -> bool:
    """Delete the tenant's evaluation, with its record and files, if it is finished (an active one stays)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM gateway.evaluations WHERE id = %s AND tenant_id = %s AND status = ANY(%s)",
            (evaluation_id, tenant, list(FINAL)),
        )
        return cur.rowcount > 0


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


async def cancel(pool: AsyncConnectionPool, tenant: str, evaluation_id: str) -> EvaluationRow | None:
    """Mark the tenant's queued or running evaluation cancelled (its worker's lease ends with it);
    None if it is not active (any more)."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(EvaluationRow))
        await cur.execute(
            "UPDATE gateway.evaluations SET status = 'cancelled', finished_at = now(), lease_owner = NULL,"
            " lease_expires_at = NULL WHERE id = %s AND tenant_id = %s AND status = ANY(%s)"
            f" RETURNING {_COLUMNS}",
            (evaluation_id, tenant, list(ACTIVE)),
        )
        return await cur.fetchone()


# -- the worker's side: claim, renew, give back, record, finish ------------------------------------


async def claim(pool: AsyncConnectionPool, owner: str, lease_s: float) -> EvaluationRow | None:
    """The oldest queued or running evaluation that no live lease holds, now ``running`` under
    ``owner``'s lease (``attempts`` counts the claims)."""
    return await LEASES.claim(pool, owner, lease_s, EvaluationRow, _COLUMNS)


async def renew(pool: AsyncConnectionPool, evaluation_id: str, owner: str, lease_s: float) -> bool:
    return await LEASES.renew(pool, evaluation_id, owner, lease_s)


async def release(pool: AsyncConnectionPool, evaluation_id: str, owner: str) -> bool:
    return await LEASES.release(pool, evaluation_id, owner)


async def record(pool: AsyncConnectionPool, evaluation_id: str, owner: str, **changes: Any) -> bool:
    """Set columns of a held evaluation (``config``, ``state``, ``progress``: dicts as JSON); False if
    the lease is lost."""
    sets = ", ".join(f"{k} = %({k})s" for k in changes)
    params = {k: Jsonb(v) if isinstance(v, dict) else v for k, v in changes.items()}
    return await LEASES.update(pool, evaluation_id, owner, sets, params)


async def append_result(
    pool: AsyncConnectionPool, evaluation_id: str, owner: str, arm: str, row: dict[str, Any]
) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO gateway.evaluation_results (evaluation_id, arm, result)"
            f" SELECT %(_id)s, %(arm)s, %(row)s WHERE EXISTS (SELECT 1 FROM gateway.evaluations WHERE {HELD})",
            {"_id": evaluation_id, "_owner": owner, "arm": arm, "row": Jsonb(row)},
        )
        return cur.rowcount > 0


async def results(pool: AsyncConnectionPool, evaluation_id: str, arm: str) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT result FROM gateway.evaluation_results WHERE evaluation_id = %s AND arm = %s ORDER BY seq",
            (evaluation_id, arm),
        )
        return [dict(r[0]) for r in await cur.fetchall()]


async def finish(
    pool: AsyncConnectionPool,
    evaluation_id: str,
    owner: str,
    status: str,
    *,
    report: dict[str, Any] | None = None,
    promotion: dict[str, Any] | None = None,
    error: str | None = None,
    progress: dict[str, Any] | None = None,
    files: dict[str, tuple[str, bytes]] | None = None,
) -> bool:
    """End a held evaluation (``succeeded`` with its report and report files, or ``failed`` with its
    error) in one transaction; False, and nothing written, if the lease is lost (e.g. a cancel won)."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE gateway.evaluations SET status = %(s)s, report = %(r)s, promotion = %(p)s, error = %(e)s,"
            " progress = coalesce(%(g)s, progress), finished_at = now(), lease_owner = NULL, lease_expires_at = NULL"
            f" WHERE {HELD}",
            {
                "s": status,
                "r": Jsonb(report) if report is not None else None,
                "p": Jsonb(promotion) if promotion is not None else None,
                "e": error,
                "g": Jsonb(progress) if progress is not None else None,
                "_id": evaluation_id,
                "_owner": owner,
            },
        )
        if cur.rowcount == 0:
            return False
        for name, (media_type, content) in (files or {}).items():
            await _put_file(conn, evaluation_id, name, media_type, content)
    return True
