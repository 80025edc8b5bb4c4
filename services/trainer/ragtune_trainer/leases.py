"""The job queue shared by every trainer replica, in PostgreSQL.

A replica takes the next job with ``FOR UPDATE SKIP LOCKED`` (two replicas never take the same
one) and holds it under a lease (owner, expiry) that it renews while the job trains. A job whose
lease has expired (its replica died, or lost the database for longer than the lease) is taken by
the next replica that looks, which resumes it from its last checkpoint. Times are the database's
``now()``, so the replicas' clocks never matter. Succeeded jobs whose adapter is not published yet
are leased the same way while one replica publishes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ragtune_trainer.store import JOB_COLUMNS, JobRow, job_row


@dataclass(frozen=True)
class Claim:
    job: JobRow
    previous_owner: str | None  # the replica whose lease expired; None for a job nobody held


_CLAIM = """
WITH next AS (
    SELECT id, lease_owner FROM trainer.jobs
    WHERE {where} AND (lease_owner IS NULL OR lease_expires_at < now())
    ORDER BY {order} LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE trainer.jobs AS j
SET lease_owner = %(owner)s, lease_expires_at = now() + make_interval(secs => %(lease_s)s), heartbeat_at = now()
FROM next WHERE j.id = next.id
RETURNING j.id, next.lease_owner AS previous_owner
"""


async def _claim(pool: AsyncConnectionPool, where: str, order: str, params: dict[str, object]) -> Claim | None:
    query = sql.SQL(_CLAIM.format(where=where, order=order))  # fixed fragments from this module only
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query, params)
        claimed = await cur.fetchone()
        if claimed is None:
            return None
        await cur.execute(sql.SQL("SELECT {} FROM trainer.jobs WHERE id = %s").format(JOB_COLUMNS), (claimed["id"],))
        row = await cur.fetchone()
    assert row is not None
    return Claim(job_row(row), claimed["previous_owner"])


async def claim_next_job(pool: AsyncConnectionPool, owner: str, lease_s: float) -> Claim | None:
    """Lease the next job to train: one left mid-way by a replica whose lease expired first, then
    the oldest queued. None when there is none."""
    return await _claim(
        pool,
        "status IN ('validating_files', 'queued', 'running')",
        "(status = 'queued'), id",
        {"owner": owner, "lease_s": lease_s},
    )


async def claim_unpublished_job(pool: AsyncConnectionPool, owner: str, lease_s: float, after_id: str) -> Claim | None:
    """Lease the next succeeded job (id above ``after_id``) whose adapter is not published."""
    return await _claim(
        pool,
        "status = 'succeeded' AND publish_state <> 'published' AND id > %(after_id)s",
        "id",
        {"owner": owner, "lease_s": lease_s, "after_id": after_id},
    )


async def renew_lease(pool: AsyncConnectionPool, job_id: str, owner: str, lease_s: float) -> bool:
    """Extend ``owner``'s lease on the job; False if it no longer holds it."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE trainer.jobs SET lease_expires_at = now() + make_interval(secs => %s), heartbeat_at = now()"
            " WHERE id = %s AND lease_owner = %s",
            (lease_s, job_id, owner),
        )
        return cur.rowcount == 1


async def release_lease(pool: AsyncConnectionPool, job_id: str, owner: str) -> None:
    """Give the job up at once (on shutdown, or once it is final): the next replica may take it."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE trainer.jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = %s AND lease_owner = %s",
            (job_id, owner),
        )


async def queue_depth(pool: AsyncConnectionPool) -> int:
    """Jobs waiting for a replica: queued, or active with no live lease."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM trainer.jobs WHERE status IN ('validating_files', 'queued', 'running')"
            " AND (lease_owner IS NULL OR lease_expires_at < now())"
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0
