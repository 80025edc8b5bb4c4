"""Leased jobs in a table of the gateway (evaluations, eval runs): a worker claims the oldest row
that is queued or running under no live lease, renews its lease while it works, gives it back when
it stops on purpose; every write it makes carries :meth:`LeasedTable.held` in its WHERE clause, so
it lands only while the row is still running under this worker's lease. ``attempts`` counts the
claims not given back (workers that died), so a job that kills its workers can be given up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

Row = TypeVar("Row")


@dataclass(frozen=True)
class LeasedTable:
    table: str  # a constant of this package, never input
    queued: str
    running: str
    started_column: str | None = None  # set once, at the first claim

    @property
    def held(self) -> str:
        """The fence of a worker's writes; its parameters are ``_id`` and ``_owner``."""
        return f"id = %(_id)s AND status = '{self.running}' AND lease_owner = %(_owner)s"

    async def claim(
        self, pool: AsyncConnectionPool, owner: str, lease_s: float, row: type[Row], columns: str
    ) -> Row | None:
        started = f", {self.started_column} = coalesce({self.started_column}, now())" if self.started_column else ""
        async with pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(row))
            await cur.execute(
                f"UPDATE {self.table} SET status = '{self.running}'{started}, lease_owner = %(o)s,"
                " lease_expires_at = now() + make_interval(secs => %(l)s), attempts = attempts + 1"
                f" WHERE id = (SELECT id FROM {self.table} WHERE status IN ('{self.queued}', '{self.running}')"
                "   AND (lease_expires_at IS NULL OR lease_expires_at < now())"
                "   ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                f" RETURNING {columns}",
                {"o": owner, "l": lease_s},
            )
            return await cur.fetchone()

    async def renew(self, pool: AsyncConnectionPool, job_id: str, owner: str, lease_s: float) -> bool:
        """Extend the lease; False when ``owner`` no longer holds it (cancelled, deleted or taken over)."""
        return await self.update(
            pool, job_id, owner, "lease_expires_at = now() + make_interval(secs => %(l)s)", {"l": lease_s}
        )

    async def release(self, pool: AsyncConnectionPool, job_id: str, owner: str) -> bool:
        """Give the lease back (a worker stopping on purpose): another worker resumes at once, and the
        claim does not count as a failed attempt."""
        sets = "lease_owner = NULL, lease_expires_at = NULL, attempts = greatest(attempts - 1, 0)"
        return await self.update(pool, job_id, owner, sets, {})

    async def update(
        self, pool: AsyncConnectionPool, job_id: str, owner: str, sets: str, params: dict[str, Any]
    ) -> bool:
        """``UPDATE ... SET <sets>`` of a held row; False (nothing written) when the lease is lost."""
        async with pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE {self.table} SET {sets} WHERE {self.held}",
                {**params, "_id": job_id, "_owner": owner},
            )
            return cur.rowcount > 0
