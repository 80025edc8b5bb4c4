"""Model aliases and their promotions (schema ``gateway``).

An alias (``ft:latest-good``) names whichever of the tenant's adapters currently holds it; chat
completions accept it wherever a model name goes. It moves only through a promotion: a candidate
and the holder, both scored on the same held-out questions, and the candidate takes the alias only
when its score is strictly higher (or the alias has no holder). The caller states which holder it
measured; if the alias moved meanwhile the promotion is refused with a conflict, so a decision is
never taken against a holder nobody measured. Every decision is recorded with both scores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ragtune_gateway.errors import ApiError
from ragtune_gateway.store import new_id

# "ft:" and a name without further colons: never the name of an adapter ("ft:<base>:<suffix>:<id>")
ALIAS = re.compile(r"ft:[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Alias:
    tenant_id: str
    alias: str
    model: str
    metric: str
    score: float
    evaluation: dict[str, Any]
    updated_at: datetime


@dataclass(frozen=True)
class Promotion:
    id: str
    tenant_id: str
    alias: str
    candidate: str
    candidate_score: float
    holder: str | None
    holder_score: float | None
    metric: str
    promoted: bool
    reason: str
    evaluation: dict[str, Any]
    created_at: datetime


def is_alias(name: str) -> bool:
    return ALIAS.fullmatch(name) is not None


def check_alias(name: str, param: str = "alias") -> str:
    if not is_alias(name):
        raise ApiError(
            400,
            f"Invalid alias {name!r}: use 'ft:' and 1-64 letters, digits, '.', '_' or '-' (no further ':').",
            param=param,
            code="invalid_alias",
        )
    return name


def alias_object(row: Alias) -> dict[str, Any]:
    return {
        "id": row.alias,
        "object": "model.alias",
        "model": row.model,
        "metric": row.metric,
        "score": row.score,
        "evaluation": row.evaluation,
        "updated_at": int(row.updated_at.timestamp()),
    }


def promotion_object(row: Promotion) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "model.alias.promotion",
        "alias": row.alias,
        "candidate": row.candidate,
        "candidate_score": row.candidate_score,
        "holder": row.holder,
        "holder_score": row.holder_score,
        "metric": row.metric,
        "promoted": row.promoted,
        "reason": row.reason,
        "evaluation": row.evaluation,
        "created_at": int(row.created_at.timestamp()),
    }


_ALIAS_COLUMNS = "tenant_id, alias, model, metric, score, evaluation, updated_at"
_PROMOTION_COLUMNS = (
    "id, tenant_id, alias, candidate, candidate_score, holder, holder_score, metric, promoted, reason,"
    " evaluation, created_at"
)


async def _fetch_alias(conn: psycopg.AsyncConnection, tenant: str, alias: str) -> Alias | None:
    cur = conn.cursor(row_factory=class_row(Alias))
    await cur.execute(
        f"SELECT {_ALIAS_COLUMNS} FROM gateway.model_aliases WHERE tenant_id = %s AND alias = %s", (tenant, alias)
    )
    return await cur.fetchone()


async def get_alias(pool: AsyncConnectionPool, tenant: str, alias: str) -> Alias | None:
    async with pool.connection() as conn:
        return await _fetch_alias(conn, tenant, alias)


async def list_aliases(pool: AsyncConnectionPool, tenant: str) -> list[Alias]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(Alias))
        await cur.execute(
            f"SELECT {_ALIAS_COLUMNS} FROM gateway.model_aliases WHERE tenant_id = %s ORDER BY alias", (tenant,)
        )
        return await cur.fetchall()


async def delete_alias(pool: AsyncConnectionPool, tenant: str, alias: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM gateway.model_aliases WHERE tenant_id = %s AND alias = %s", (tenant, alias)
        )
        return cur.rowcount > 0


async def list_promotions(pool: AsyncConnectionPool, tenant: str, alias: str) -> list[Promotion]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(Promotion))
        await cur.execute(
            f"SELECT {_PROMOTION_COLUMNS} FROM gateway.promotions WHERE tenant_id = %s AND alias = %s"
            " ORDER BY created_at, id",
            (tenant, alias),
        )
        return await cur.fetchall()


def decide(candidate: str, score: float, holder: Alias | None, holder_score: float | None) -> tuple[bool, str]:
    """(promoted, why). Strictly better only: a tie keeps the holder (no churn on noise)."""
    if holder is None:
        return True, "the alias had no holder"
    if holder.model == candidate:
        return False, "the candidate already holds the alias"
    assert holder_score is not None
    if score > holder_score:
        return True, f"{score:.4g} beats the holder's {holder_score:.4g} on the same held-out questions"
    return False, f"{score:.4g} does not beat the holder's {holder_score:.4g} on the same held-out questions"


async def promote(
    pool: AsyncConnectionPool,
    tenant: str,
    alias: str,
    *,
    candidate: str,
    candidate_score: float,
    expected_holder: str | None,
    holder_score: float | None,
    metric: str,
    evaluation: dict[str, Any],
) -> Promotion:
    """Decide and record, under the alias's row lock (or, for a new alias, its insert)."""
    async with pool.connection() as conn, conn.transaction():
        # one promotion of an alias at a time, whether or not its row exists yet
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ragtune-alias:{tenant}:{alias}",))
        holder = await _fetch_alias(conn, tenant, alias)
        current = holder.model if holder else None
        if current != expected_holder:
            raise ApiError(
                409,
                f"The alias '{alias}' is held by {current!r}, not {expected_holder!r}: evaluate against the"
                " current holder and try again.",
                param="holder",
                code="alias_moved",
            )
        if holder is not None and holder.model != candidate and holder_score is None:
            raise ApiError(
                400, f"The alias '{alias}' has a holder: its score is required.", param="holder_score", code=None
            )
        promoted, reason = decide(candidate, candidate_score, holder, holder_score)
        if promoted:
            await conn.execute(
                "INSERT INTO gateway.model_aliases (tenant_id, alias, model, metric, score, evaluation)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, alias) DO UPDATE SET"
                " model = EXCLUDED.model, metric = EXCLUDED.metric, score = EXCLUDED.score,"
                " evaluation = EXCLUDED.evaluation, updated_at = now()",
                (tenant, alias, candidate, metric, candidate_score, Jsonb(evaluation)),
            )
        pcur = conn.cursor(row_factory=class_row(Promotion))
        await pcur.execute(
            f"INSERT INTO gateway.promotions ({_PROMOTION_COLUMNS}) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
            f" RETURNING {_PROMOTION_COLUMNS}",
            (
                new_id("promo_"),
                tenant,
                alias,
                candidate,
                candidate_score,
                current,
                holder_score if holder is not None else None,
                metric,
                promoted,
                reason,
                Jsonb(evaluation),
            ),
        )
        row = await pcur.fetchone()
    assert row is not None
    return row
