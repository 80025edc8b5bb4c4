"""Model aliases and the record of their promotions (tables ``gateway.model_aliases`` and
``gateway.promotions``).

A promotion reads the alias's holder and writes its decision in one transaction, under an advisory
lock on the alias (its row may not exist yet): :func:`locked_alias` hands the caller the holder
and the connection that holds the lock, so the decision between the read and the writes is the
caller's and nothing moves the alias meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ragtune_gateway import ids


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
    """Whether the alias existed (the record of its promotions stays)."""
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


@dataclass(frozen=True)
class LockedAlias:
    """An alias held still for one transaction: its ``holder`` as read under the lock (None: the
    alias has none), and the writes of a decision. An exception leaving :func:`locked_alias`
    rolls both writes back."""

    conn: psycopg.AsyncConnection
    tenant: str
    alias: str
    holder: Alias | None

    async def hold(self, model: str, metric: str, score: float, evaluation: dict[str, Any]) -> None:
        """``model`` takes the alias (created if new)."""
        await self.conn.execute(
            "INSERT INTO gateway.model_aliases (tenant_id, alias, model, metric, score, evaluation)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, alias) DO UPDATE SET"
            " model = EXCLUDED.model, metric = EXCLUDED.metric, score = EXCLUDED.score,"
            " evaluation = EXCLUDED.evaluation, updated_at = now()",
            (self.tenant, self.alias, model, metric, score, Jsonb(evaluation)),
        )

    async def last_move(self) -> Promotion | None:
        """The decision that gave the alias to its current holder (None: no holder, or none recorded)."""
        if self.holder is None:
            return None
        cur = self.conn.cursor(row_factory=class_row(Promotion))
        await cur.execute(
            f"SELECT {_PROMOTION_COLUMNS} FROM gateway.promotions WHERE tenant_id = %s AND alias = %s"
            " AND promoted AND candidate = %s ORDER BY created_at DESC, id DESC LIMIT 1",
            (self.tenant, self.alias, self.holder.model),
        )
        return await cur.fetchone()

    async def record(
        self,
        *,
        candidate: str,
        candidate_score: float,
        holder_score: float | None,
        metric: str,
        promoted: bool,
        reason: str,
        evaluation: dict[str, Any],
    ) -> Promotion:
        """The decision, promoted or not, against the holder read under the lock."""
        cur = self.conn.cursor(row_factory=class_row(Promotion))
        await cur.execute(
            f"INSERT INTO gateway.promotions ({_PROMOTION_COLUMNS}) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
            f" RETURNING {_PROMOTION_COLUMNS}",
            (
                ids.new_id(ids.PROMOTION),
                self.tenant,
                self.alias,
                candidate,
                candidate_score,
                self.holder.model if self.holder else None,
                holder_score if self.holder is not None else None,
                metric,
                promoted,
                reason,
                Jsonb(evaluation),
            ),
        )
        row = await cur.fetchone()
        assert row is not None
        return row


@asynccontextmanager
async def locked_alias(pool: AsyncConnectionPool, tenant: str, alias: str) -> AsyncIterator[LockedAlias]:
    """One promotion of an alias at a time, in every gateway replica, whether or not its row
    exists yet: a transaction holding the alias's advisory lock, committed when the block ends."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ragtune-alias:{tenant}:{alias}",))
        yield LockedAlias(conn, tenant, alias, await _fetch_alias(conn, tenant, alias))
