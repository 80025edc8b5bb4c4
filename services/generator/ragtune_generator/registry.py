"""The adapter registry in PostgreSQL (schema ``generator``): the SQL, in one place. Every change
is announced with NOTIFY on :data:`CHANNEL` in the same transaction, so listeners learn of it
exactly when it becomes visible."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ragtune_common.errors import Unavailable

SCHEMA = "generator"
CHANNEL = "ragtune_generator_adapters"
_COLUMNS = "id, name, tenant, base_model, rank, alpha, target_modules, fingerprint, directory, created_at, load_error"


@dataclass(frozen=True)
class AdapterRow:
    id: int
    name: str
    tenant: str
    base_model: str
    rank: int
    alpha: float
    target_modules: list[str]
    fingerprint: str
    directory: str
    created_at: datetime
    load_error: str


class DatabaseDown(Unavailable):
    def __init__(self, exc: Exception) -> None:
        super().__init__(f"the adapter registry is unreachable: {type(exc).__name__}")


class RegistryStore:
    """Reads and writes of ``generator.adapters``; database failures surface as UNAVAILABLE."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[AdapterRow]:
        try:
            async with self._pool.connection() as conn, conn.cursor(row_factory=class_row(AdapterRow)) as cur:
                await cur.execute(sql, params)  # type: ignore[arg-type]  # constant SQL text
                return await cur.fetchall()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise DatabaseDown(exc) from exc

    async def get(self, name: str) -> AdapterRow | None:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM generator.adapters WHERE name = %s", (name,))
        return rows[0] if rows else None

    async def list(self, base_model: str, tenant: str = "") -> list[AdapterRow]:
        return await self._fetch(
            f"SELECT {_COLUMNS} FROM generator.adapters WHERE base_model = %s AND (%s = '' OR tenant = %s)"
            " ORDER BY name",
            (base_model, tenant, tenant),
        )

    async def next_id(self) -> int:
        """A fresh adapter id (the identity sequence: never reused, global to every replica)."""
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute("SELECT nextval(pg_get_serial_sequence('generator.adapters', 'id'))")
                row = await cur.fetchone()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise DatabaseDown(exc) from exc
        assert row is not None
        return int(row[0])

    async def insert(self, row: AdapterRow) -> bool:
        """Register a complete adapter and announce it; False if the name is taken meanwhile."""
        sql = (
            "INSERT INTO generator.adapters (id, name, tenant, base_model, rank, alpha, target_modules, fingerprint,"
            " directory, load_error, checked_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
            " ON CONFLICT (name) DO NOTHING"
        )
        params = (
            row.id,
            row.name,
            row.tenant,
            row.base_model,
            row.rank,
            row.alpha,
            row.target_modules,
            row.fingerprint,
            row.directory,
            row.load_error,
        )
        return await self._write(sql, params, row.name)

    async def delete(self, name: str) -> bool:
        return await self._write("DELETE FROM generator.adapters WHERE name = %s", (name,), name)

    async def mark(self, row: AdapterRow, error: str) -> bool:
        """Record the outcome of checking the row's files (``''`` = fine); announced if it changed."""
        sql = "UPDATE generator.adapters SET load_error = %s, checked_at = now() WHERE id = %s AND load_error <> %s"
        return await self._write(sql, (error, row.id, error), row.name)

    async def _write(self, sql: str, params: tuple[Any, ...], name: str) -> bool:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = await conn.execute(sql, params)  # type: ignore[arg-type]  # constant SQL text
                if cur.rowcount:
                    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, name))
                return cur.rowcount > 0
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise DatabaseDown(exc) from exc
