"""Distillations (``gateway.distillations``) and the stored completions each one took
(``gateway.distillation_items``: its training lines, its held-out completions, its merged
duplicates), per tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool


@dataclass(frozen=True)
class DistillationRow:
    id: str
    tenant_id: str
    file_id: str | None
    filename: str
    filter: dict[str, Any]
    holdout_fraction: float
    seed: int
    teacher: dict[str, Any] | None
    counts: dict[str, int]
    created_at: datetime


@dataclass(frozen=True)
class Item:
    """One completion a distillation took: ``split`` train (with its ``line`` at ``position``),
    holdout or merged."""

    completion_id: str
    split: str
    position: int | None = None
    line: dict[str, Any] | None = None


_COLUMNS = "id, tenant_id, file_id, filename, filter, holdout_fraction, seed, teacher, counts, created_at"


async def insert(pool: AsyncConnectionPool, row: DistillationRow, items: list[Item]) -> DistillationRow:
    """The distillation and its items in one transaction."""
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=class_row(DistillationRow))
        await cur.execute(
            f"INSERT INTO gateway.distillations ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
            f" RETURNING {_COLUMNS}",
            (
                row.id,
                row.tenant_id,
                row.file_id,
                row.filename,
                Jsonb(row.filter),
                row.holdout_fraction,
                row.seed,
                Jsonb(row.teacher) if row.teacher is not None else None,
                Jsonb(row.counts),
            ),
        )
        stored = await cur.fetchone()
        await cur.executemany(
            "INSERT INTO gateway.distillation_items (distillation_id, tenant_id, completion_id, split, position, line)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (row.id, row.tenant_id, i.completion_id, i.split, i.position, Jsonb(i.line) if i.line else None)
                for i in items
            ],
        )
    assert stored is not None
    return stored


async def get(pool: AsyncConnectionPool, tenant: str, distillation_id: str) -> DistillationRow | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(DistillationRow))
        await cur.execute(
            f"SELECT {_COLUMNS} FROM gateway.distillations WHERE tenant_id = %s AND id = %s", (tenant, distillation_id)
        )
        return await cur.fetchone()


async def list_page(pool: AsyncConnectionPool, tenant: str, after: str, limit: int) -> list[DistillationRow]:
    """Newest first."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(DistillationRow))
        await cur.execute(
            f"SELECT {_COLUMNS} FROM gateway.distillations WHERE tenant_id = %(t)s"
            " AND (%(a)s = '' OR (created_at, id) < (SELECT created_at, id FROM gateway.distillations"
            "      WHERE tenant_id = %(t)s AND id = %(a)s))"
            " ORDER BY created_at DESC, id DESC LIMIT %(n)s",
            {"t": tenant, "a": after, "n": limit},
        )
        return await cur.fetchall()


async def holdout_ids(pool: AsyncConnectionPool, distillation_id: str) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT completion_id FROM gateway.distillation_items i WHERE distillation_id = %s AND split = 'holdout'"
            " AND EXISTS (SELECT 1 FROM gateway.stored_completions c WHERE c.id = i.completion_id)"
            " ORDER BY completion_id",
            (distillation_id,),
        )
        return [str(r[0]) for r in await cur.fetchall()]


async def taking(pool: AsyncConnectionPool, tenant: str, completion_id: str) -> list[tuple[DistillationRow, str]]:
    """The distillations that took the completion, with how (train, holdout, merged)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT i.distillation_id, i.split FROM gateway.distillation_items i"
            " WHERE i.tenant_id = %s AND i.completion_id = %s",
            (tenant, completion_id),
        )
        links = [(str(d), str(s)) for d, s in await cur.fetchall()]
    found = []
    for distillation_id, split in links:
        row = await get(pool, tenant, distillation_id)
        if row is not None:
            found.append((row, split))
    return found


async def training_lines(pool: AsyncConnectionPool, distillation_id: str, without: str) -> list[dict[str, Any]]:
    """The distillation's training lines in file order, but the one of completion ``without``."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT line FROM gateway.distillation_items WHERE distillation_id = %s AND split = 'train'"
            " AND completion_id <> %s ORDER BY position",
            (distillation_id, without),
        )
        return [r[0] for r in await cur.fetchall()]


async def forget(
    pool: AsyncConnectionPool, tenant: str, completion_id: str, moves: dict[str, tuple[str | None, int]]
) -> None:
    """Drops every link of the completion and, in the same transaction, points each distillation of
    ``moves`` at its rewritten file and its number of lines (None, 0: it has none left)."""
    async with pool.connection() as conn, conn.transaction():
        for distillation_id, (file_id, training) in moves.items():
            await conn.execute(
                "UPDATE gateway.distillations SET file_id = %s,"
                " counts = jsonb_set(counts, '{training}', to_jsonb(%s::int)) WHERE tenant_id = %s AND id = %s",
                (file_id, training, tenant, distillation_id),
            )
        await conn.execute(
            "DELETE FROM gateway.distillation_items WHERE tenant_id = %s AND completion_id = %s",
            (tenant, completion_id),
        )


async def expired_in_files(pool: AsyncConnectionPool, limit: int = 1000) -> list[tuple[str, str]]:
    """(tenant, completion id) of completions past their tenant's retention whose line is in a
    distillation's file."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT DISTINCT c.tenant_id, c.id FROM gateway.stored_completions c"
            " JOIN gateway.tenants t ON t.id = c.tenant_id"
            " JOIN gateway.distillation_items i ON i.tenant_id = c.tenant_id AND i.completion_id = c.id"
            " JOIN gateway.distillations d ON d.id = i.distillation_id"
            " WHERE i.split = 'train' AND d.file_id IS NOT NULL AND t.completion_retention_days IS NOT NULL"
            " AND c.created_at < now() - make_interval(days => t.completion_retention_days) LIMIT %s",
            (limit,),
        )
        return [(str(t), str(c)) for t, c in await cur.fetchall()]
