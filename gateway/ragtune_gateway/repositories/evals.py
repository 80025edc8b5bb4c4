"""Evals, their runs and the runs' items (SQL only). A run and all of its items are inserted in
one transaction; the worker that holds a run's lease records each item's sample and grades and,
at the end, the run's outcome, each write fenced by the lease (:mod:`.leases`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ragtune_gateway.repositories.leases import LeasedTable

ACTIVE = ("queued", "in_progress")
LEASES = LeasedTable("gateway.eval_runs", "queued", "in_progress")
Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class EvalRow:
    id: str
    tenant_id: str
    name: str
    metadata: dict[str, str] | None
    data_source_config: dict[str, Any]
    testing_criteria: list[dict[str, Any]]
    created_at: datetime


@dataclass(frozen=True)
class RunRow:
    id: str
    eval_id: str
    tenant_id: str
    name: str
    metadata: dict[str, str] | None
    model: str
    data_source: dict[str, Any]
    status: str
    error: dict[str, str] | None
    created_at: datetime
    finished_at: datetime | None
    attempts: int


@dataclass(frozen=True)
class ItemRow:
    run_id: str
    idx: int
    item: dict[str, Any]
    sample: dict[str, Any] | None
    results: list[dict[str, Any]] | None
    status: str
    graded_at: datetime | None


@dataclass(frozen=True)
class RunTotals:
    """What a run's object reports, summed over its graded items."""

    counts: dict[str, int]  # status -> items
    criteria: list[tuple[str, int, int]]  # (name, passed, failed)
    usage: list[tuple[str, int, int, int]]  # (model, calls, prompt tokens, completion tokens)


_EVAL = "id, tenant_id, name, metadata, data_source_config, testing_criteria, created_at"
_RUN = "id, eval_id, tenant_id, name, metadata, model, data_source, status, error, created_at, finished_at, attempts"
_ITEM = "run_id, idx, item, sample, results, status, graded_at"


def _page(table: str, scope: str, order: Order) -> str:
    """Rows of ``table`` within ``scope`` (parameters ``s``, ``a`` (after id), ``n``), by creation."""
    op, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
    return (
        f" AND (%(a)s = '' OR (created_at, id) {op} (SELECT created_at, id FROM {table} WHERE {scope} AND id = %(a)s))"
        f" ORDER BY created_at {direction}, id {direction} LIMIT %(n)s"
    )


# -- evals ------------------------------------------------------------------------------------------


async def insert_eval(
    pool: AsyncConnectionPool,
    eval_id: str,
    tenant: str,
    name: str,
    metadata: dict[str, str] | None,
    config: dict[str, Any],
    criteria: list[dict[str, Any]],
) -> EvalRow:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(EvalRow))
        await cur.execute(
            "INSERT INTO gateway.evals (id, tenant_id, name, metadata, data_source_config, testing_criteria)"
            f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_EVAL}",
            (eval_id, tenant, name, Jsonb(metadata) if metadata is not None else None, Jsonb(config), Jsonb(criteria)),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def get_eval(pool: AsyncConnectionPool, tenant: str, eval_id: str) -> EvalRow | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(EvalRow))
        await cur.execute(f"SELECT {_EVAL} FROM gateway.evals WHERE tenant_id = %s AND id = %s", (tenant, eval_id))
        return await cur.fetchone()


async def list_evals(pool: AsyncConnectionPool, tenant: str, after: str, limit: int, order: Order) -> list[EvalRow]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(EvalRow))
        await cur.execute(
            f"SELECT {_EVAL} FROM gateway.evals WHERE tenant_id = %(s)s"
            + _page("gateway.evals", "tenant_id = %(s)s", order),
            {"s": tenant, "a": after, "n": limit},
        )
        return await cur.fetchall()


async def update_eval(
    pool: AsyncConnectionPool, tenant: str, eval_id: str, name: str | None, metadata: dict[str, str] | None
) -> EvalRow | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(EvalRow))
        await cur.execute(
            "UPDATE gateway.evals SET name = coalesce(%s, name), metadata = coalesce(%s, metadata)"
            f" WHERE tenant_id = %s AND id = %s RETURNING {_EVAL}",
            (name, Jsonb(metadata) if metadata is not None else None, tenant, eval_id),
        )
        return await cur.fetchone()


async def delete_eval(pool: AsyncConnectionPool, tenant: str, eval_id: str) -> bool:
    """The eval with its runs and their items (a worker running one of them is fenced out)."""
    async with pool.connection() as conn:
        cur = await conn.execute("DELETE FROM gateway.evals WHERE tenant_id = %s AND id = %s", (tenant, eval_id))
        return cur.rowcount > 0


# -- runs -------------------------------------------------------------------------------------------


async def insert_run(
    pool: AsyncConnectionPool,
    run_id: str,
    evaluation: EvalRow,
    name: str,
    metadata: dict[str, str] | None,
    model: str,
    data_source: dict[str, Any],
    items: list[dict[str, Any]],
    samples: list[dict[str, Any] | None],
) -> RunRow:
    """The run, queued, and its items, pending (with the samples given, for a run that grades
    samples it was given instead of sampling a model), in one transaction."""
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=class_row(RunRow))
        await cur.execute(
            "INSERT INTO gateway.eval_runs (id, eval_id, tenant_id, name, metadata, model, data_source, status)"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s, 'queued') RETURNING {_RUN}",
            (
                run_id,
                evaluation.id,
                evaluation.tenant_id,
                name,
                Jsonb(metadata) if metadata is not None else None,
                model,
                Jsonb(data_source),
            ),
        )
        row = await cur.fetchone()
        async with conn.cursor() as items_cur:
            await items_cur.executemany(
                "INSERT INTO gateway.eval_run_items (run_id, idx, item, sample, status)"
                " VALUES (%s, %s, %s, %s, 'pending')",
                [
                    (run_id, i, Jsonb(item), Jsonb(sample) if sample is not None else None)
                    for i, (item, sample) in enumerate(zip(items, samples, strict=True))
                ],
            )
    assert row is not None
    return row


async def get_run(pool: AsyncConnectionPool, tenant: str, eval_id: str, run_id: str) -> RunRow | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(RunRow))
        await cur.execute(
            f"SELECT {_RUN} FROM gateway.eval_runs WHERE tenant_id = %s AND eval_id = %s AND id = %s",
            (tenant, eval_id, run_id),
        )
        return await cur.fetchone()


async def list_runs(
    pool: AsyncConnectionPool, tenant: str, eval_id: str, status: str | None, after: str, limit: int, order: Order
) -> list[RunRow]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(RunRow))
        scope = "tenant_id = %(t)s AND eval_id = %(s)s"
        await cur.execute(
            f"SELECT {_RUN} FROM gateway.eval_runs WHERE {scope} AND (%(st)s::text IS NULL OR status = %(st)s)"
            + _page("gateway.eval_runs", scope, order),
            {"t": tenant, "s": eval_id, "st": status, "a": after, "n": limit},
        )
        return await cur.fetchall()


async def cancel_run(pool: AsyncConnectionPool, tenant: str, eval_id: str, run_id: str) -> RunRow | None:
    """Cancel a queued or running run (its worker's lease ends with it); None if it is not active."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(RunRow))
        await cur.execute(
            "UPDATE gateway.eval_runs SET status = 'canceled', finished_at = now(), lease_owner = NULL,"
            " lease_expires_at = NULL WHERE tenant_id = %s AND eval_id = %s AND id = %s AND status = ANY(%s)"
            f" RETURNING {_RUN}",
            (tenant, eval_id, run_id, list(ACTIVE)),
        )
        return await cur.fetchone()


async def delete_run(pool: AsyncConnectionPool, tenant: str, eval_id: str, run_id: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM gateway.eval_runs WHERE tenant_id = %s AND eval_id = %s AND id = %s",
            (tenant, eval_id, run_id),
        )
        return cur.rowcount > 0


async def totals(pool: AsyncConnectionPool, run_ids: list[str]) -> dict[str, RunTotals]:
    """Each run's counts by status, per grader and per model, summed over its items."""
    out = {run_id: RunTotals({}, [], []) for run_id in run_ids}
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT run_id, status, count(*) FROM gateway.eval_run_items WHERE run_id = ANY(%s) GROUP BY 1, 2",
            (run_ids,),
        )
        for run_id, status, count in await cur.fetchall():
            out[run_id].counts[status] = count
        cur = await conn.execute(
            "SELECT run_id, r->>'name', count(*) FILTER (WHERE (r->>'passed')::boolean),"
            " count(*) FILTER (WHERE NOT (r->>'passed')::boolean)"
            " FROM gateway.eval_run_items, jsonb_array_elements(coalesce(results, '[]')) AS r"
            " WHERE run_id = ANY(%s) AND status IN ('pass', 'fail') GROUP BY 1, 2 ORDER BY 1, 2",
            (run_ids,),
        )
        for run_id, name, passed, failed in await cur.fetchall():
            out[run_id].criteria.append((name, passed, failed))
        cur = await conn.execute(
            "SELECT run_id, sample->>'model', count(*), sum(coalesce((sample->'usage'->>'prompt_tokens')::int, 0)),"
            " sum(coalesce((sample->'usage'->>'completion_tokens')::int, 0))"
            " FROM gateway.eval_run_items WHERE run_id = ANY(%s) AND sample ? 'usage' GROUP BY 1, 2",
            (run_ids,),
        )
        for run_id, model, calls, prompt, completion in await cur.fetchall():
            out[run_id].usage.append((model or "", calls, prompt, completion))
    return out


async def graded_items(pool: AsyncConnectionPool, run_ids: list[str]) -> list[tuple[str, ItemRow]]:
    """(run id, item) of every graded item of the runs."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(ItemRow))
        await cur.execute(
            f"SELECT {_ITEM} FROM gateway.eval_run_items WHERE run_id = ANY(%s) AND status <> 'pending'"
            " ORDER BY run_id, idx",
            (run_ids,),
        )
        return [(row.run_id, row) for row in await cur.fetchall()]


# -- items ------------------------------------------------------------------------------------------


async def list_items(
    pool: AsyncConnectionPool, run_id: str, status: str | None, after: int | None, limit: int, order: Order
) -> list[ItemRow]:
    op, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(ItemRow))
        await cur.execute(
            f"SELECT {_ITEM} FROM gateway.eval_run_items WHERE run_id = %(r)s"
            " AND (%(s)s::text IS NULL OR status = %(s)s)"
            f" AND (%(a)s::int IS NULL OR idx {op} %(a)s) ORDER BY idx {direction} LIMIT %(n)s",
            {"r": run_id, "s": status, "a": after, "n": limit},
        )
        return await cur.fetchall()


async def get_item(pool: AsyncConnectionPool, run_id: str, idx: int) -> ItemRow | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(ItemRow))
        await cur.execute(f"SELECT {_ITEM} FROM gateway.eval_run_items WHERE run_id = %s AND idx = %s", (run_id, idx))
        return await cur.fetchone()


# -- the worker's side ------------------------------------------------------------------------------


async def claim(pool: AsyncConnectionPool, owner: str, lease_s: float) -> RunRow | None:
    return await LEASES.claim(pool, owner, lease_s, RunRow, _RUN)


async def pending_items(pool: AsyncConnectionPool, run_id: str) -> list[ItemRow]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(ItemRow))
        await cur.execute(
            f"SELECT {_ITEM} FROM gateway.eval_run_items WHERE run_id = %s AND status = 'pending' ORDER BY idx",
            (run_id,),
        )
        return await cur.fetchall()


async def record_item(
    pool: AsyncConnectionPool,
    run_id: str,
    owner: str,
    idx: int,
    sample: dict[str, Any] | None,
    results: list[dict[str, Any]],
    status: str,
) -> bool:
    """An item's sample and grades, while ``owner`` holds the run; False (nothing written) if not."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE gateway.eval_run_items SET sample = %(sample)s, results = %(results)s, status = %(status)s,"
            " graded_at = now() WHERE run_id = %(_id)s AND idx = %(idx)s AND status = 'pending'"
            f" AND EXISTS (SELECT 1 FROM gateway.eval_runs WHERE {LEASES.held})",
            {
                "sample": Jsonb(sample) if sample is not None else None,
                "results": Jsonb(results),
                "status": status,
                "_id": run_id,
                "_owner": owner,
                "idx": idx,
            },
        )
        return cur.rowcount > 0


async def finish_run(
    pool: AsyncConnectionPool, run_id: str, owner: str, status: str, error: dict[str, str] | None = None
) -> bool:
    sets = "status = %(s)s, error = %(e)s, finished_at = now(), lease_owner = NULL, lease_expires_at = NULL"
    return await LEASES.update(pool, run_id, owner, sets, {"s": status, "e": Jsonb(error) if error else None})
