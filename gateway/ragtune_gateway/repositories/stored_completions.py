"""Stored chat completions (``gateway.stored_completions``) and their feedback history
(``gateway.completion_feedback``), per tenant: another tenant's completion reads as missing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

Order = Literal["asc", "desc"]
UNCHANGED: Any = object()  # an update's field that was not given


@dataclass(frozen=True)
class StoredRow:
    id: str
    tenant_id: str
    model: str
    requested_model: str
    adapter: str
    messages: list[dict[str, Any]]
    request: dict[str, Any]
    choices: list[dict[str, Any]]
    usage: dict[str, Any] | None
    citations: list[dict[str, Any]] | None
    metadata: dict[str, str]
    correction: str | None
    created_at: datetime
    updated_at: datetime | None
    updated_by: str | None


@dataclass(frozen=True)
class FeedbackRow:
    completion_id: str
    api_key_id: str | None
    metadata: dict[str, str]
    feedback: str | None
    correction: str | None
    created_at: datetime


_COLUMNS = (
    "id, tenant_id, model, requested_model, adapter, messages, request, choices, usage, citations, metadata,"
    " correction, created_at, updated_at, updated_by"
)
_FEEDBACK = "completion_id, api_key_id, metadata, feedback, correction, created_at"


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


async def insert(pool: AsyncConnectionPool, row: StoredRow, *, tenant_default: bool) -> bool:
    """Stores ``row``. With ``tenant_default`` (the
    request did not say ``store``) only if the tenant stores completions by default. Whether it
    was stored."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO gateway.stored_completions"
            " (id, tenant_id, model, requested_model, adapter, messages, request, choices, usage, citations, metadata,"
            "  correction, created_at)"
            " SELECT %(id)s, t.id, %(model)s, %(requested)s, %(adapter)s, %(messages)s, %(request)s, %(choices)s,"
            "  %(usage)s, %(citations)s, %(metadata)s, %(correction)s, %(created)s"
            " FROM gateway.tenants t WHERE t.id = %(tenant)s AND (NOT %(default)s OR t.store_completions)",
            {
                "id": row.id,
                "tenant": row.tenant_id,
                "model": row.model,
                "requested": row.requested_model,
                "adapter": row.adapter,
                "messages": Jsonb(row.messages),
                "request": Jsonb(row.request),
                "choices": Jsonb(row.choices),
                "usage": _json(row.usage),
                "citations": _json(row.citations),
                "metadata": Jsonb(row.metadata),
                "correction": row.correction,
                "created": row.created_at,
                "default": tenant_default,
            },
        )
        return cur.rowcount > 0


async def get(pool: AsyncConnectionPool, tenant: str, completion_id: str) -> StoredRow | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(StoredRow))
        await cur.execute(
            f"SELECT {_COLUMNS} FROM gateway.stored_completions WHERE tenant_id = %s AND id = %s",
            (tenant, completion_id),
        )
        return await cur.fetchone()


async def exists(pool: AsyncConnectionPool, tenant: str, completion_id: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT 1 FROM gateway.stored_completions WHERE tenant_id = %s AND id = %s", (tenant, completion_id)
        )
        return await cur.fetchone() is not None


async def list_page(
    pool: AsyncConnectionPool,
    tenant: str,
    *,
    model: str,
    metadata: dict[str, str],
    after: str,
    limit: int,
    order: Order,
) -> list[StoredRow]:
    """The tenant's completions by creation (then id), after the completion ``after`` (its id), whose
    model (the one shown or the one asked for) is ``model`` when given, and whose metadata holds
    every pair of ``metadata``."""
    op, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(StoredRow))
        await cur.execute(
            f"SELECT {_COLUMNS} FROM gateway.stored_completions WHERE tenant_id = %(t)s"
            " AND (%(m)s = '' OR model = %(m)s OR requested_model = %(m)s)"
            " AND metadata @> %(meta)s"
            f" AND (%(a)s = '' OR (created_at, id) {op}"
            "  (SELECT created_at, id FROM gateway.stored_completions WHERE tenant_id = %(t)s AND id = %(a)s))"
            f" ORDER BY created_at {direction}, id {direction} LIMIT %(n)s",
            {"t": tenant, "m": model, "meta": Jsonb(metadata), "a": after, "n": limit},
        )
        return await cur.fetchall()


@dataclass(frozen=True)
class StoredFilter:
    """Which completions a distillation or an eval run takes: every condition given holds.
    ``ratings``: the ``feedback`` values taken ('none': not rated); ``holdout_of``: only the
    completions that distillation held out; ``limit``: the newest this many."""

    model: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    ratings: tuple[str, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    holdout_of: str = ""
    limit: int = 100_000


async def select(pool: AsyncConnectionPool, tenant: str, where: StoredFilter) -> list[StoredRow]:
    """The tenant's completions matching ``where``, oldest first (the newest ``limit`` of them)."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(StoredRow))
        await cur.execute(
            f"SELECT * FROM (SELECT {_COLUMNS} FROM gateway.stored_completions c WHERE tenant_id = %(t)s"
            " AND (%(m)s = '' OR model = %(m)s OR requested_model = %(m)s) AND metadata @> %(meta)s"
            " AND (cardinality(%(r)s::text[]) = 0 OR metadata ->> 'feedback' = ANY(%(r)s)"
            "      OR ('none' = ANY(%(r)s) AND NOT metadata ? 'feedback'))"
            " AND (%(after)s::timestamptz IS NULL OR created_at >= %(after)s)"
            " AND (%(before)s::timestamptz IS NULL OR created_at < %(before)s)"
            " AND (%(d)s = '' OR EXISTS (SELECT 1 FROM gateway.distillation_items i WHERE i.distillation_id = %(d)s"
            "      AND i.tenant_id = %(t)s AND i.completion_id = c.id AND i.split = 'holdout'))"
            " ORDER BY created_at DESC, id DESC LIMIT %(n)s) newest ORDER BY created_at, id",
            {
                "t": tenant,
                "m": where.model,
                "meta": Jsonb(where.metadata),
                "r": list(where.ratings),
                "after": where.created_after,
                "before": where.created_before,
                "d": where.holdout_of,
                "n": where.limit,
            },
        )
        return await cur.fetchall()


async def update(
    pool: AsyncConnectionPool,
    tenant: str,
    completion_id: str,
    key_hash: str,
    metadata: dict[str, str] = UNCHANGED,
    correction: str | None = UNCHANGED,
) -> StoredRow | None:
    """Replaces the metadata and/or the correction (:data:`UNCHANGED` leaves one as it is; new
    metadata without a ``correction`` key drops a correction that came from metadata), records
    who (the API key of ``key_hash``) and when, and appends the result to the feedback history, in
    one transaction. None if the tenant has no such completion."""
    sets = ["updated_at = now()", "updated_by = (SELECT id FROM gateway.api_keys WHERE key_hash = %(k)s)"]
    if metadata is not UNCHANGED:
        sets.append("metadata = %(meta)s")
    if correction is not UNCHANGED:
        sets.append("correction = %(c)s")
    elif metadata is not UNCHANGED:
        # a correction given in metadata lives and dies with its key; one given apart (longer) stays
        sets.append(
            "correction = CASE WHEN %(meta)s ? 'correction' THEN nullif(%(meta)s ->> 'correction', '')"
            " WHEN correction IS DISTINCT FROM metadata ->> 'correction' THEN correction END"
        )
    params = {"t": tenant, "id": completion_id, "k": key_hash, "meta": Jsonb(metadata or {}), "c": correction}
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=class_row(StoredRow))
        await cur.execute(
            f"UPDATE gateway.stored_completions SET {', '.join(sets)}"
            f" WHERE tenant_id = %(t)s AND id = %(id)s RETURNING {_COLUMNS}",
            params,
        )
        row = await cur.fetchone()
        if row is None:
            return None
        await conn.execute(
            "INSERT INTO gateway.completion_feedback"
            " (completion_id, tenant_id, api_key_id, metadata, feedback, correction)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (row.id, tenant, row.updated_by, Jsonb(row.metadata), row.metadata.get("feedback"), row.correction),
        )
        return row


async def feedback(pool: AsyncConnectionPool, tenant: str, completion_id: str) -> list[FeedbackRow]:
    """The completion's metadata updates, oldest first."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(FeedbackRow))
        await cur.execute(
            f"SELECT {_FEEDBACK} FROM gateway.completion_feedback WHERE tenant_id = %s AND completion_id = %s"
            " ORDER BY id",
            (tenant, completion_id),
        )
        return await cur.fetchall()


async def delete(pool: AsyncConnectionPool, tenant: str, completion_id: str) -> bool:
    """Whether it existed; its feedback history goes with it."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM gateway.stored_completions WHERE tenant_id = %s AND id = %s", (tenant, completion_id)
        )
        return cur.rowcount > 0


async def delete_expired(pool: AsyncConnectionPool) -> int:
    """Deletes every completion older than its tenant's ``completion_retention_days``; how many.
    Idempotent: any number of gateway processes may run it at any time."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM gateway.stored_completions c USING gateway.tenants t"
            " WHERE c.tenant_id = t.id AND t.completion_retention_days IS NOT NULL"
            " AND c.created_at < now() - make_interval(days => t.completion_retention_days)"
        )
        return cur.rowcount
