"""Stored responses (``gateway.responses``): the answer as sent and the conversation it answered,
per tenant. Another tenant's response reads as missing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool


@dataclass(frozen=True)
class ResponseRow:
    id: str
    tenant_id: str
    model: str
    status: str
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    previous_response_id: str | None
    created_at: datetime


_COLUMNS = "id, tenant_id, model, status, response, input_items, previous_response_id, created_at"


async def insert(
    pool: AsyncConnectionPool,
    tenant: str,
    response: dict[str, Any],
    input_items: list[dict[str, Any]],
) -> None:
    """``response`` is the whole body (its ``id``, ``model``, ``status`` and ``previous_response_id``
    are copied into their columns)."""
    async with pool.connection() as conn:
        await conn.execute(
            f"INSERT INTO gateway.responses ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, now())",
            (
                response["id"],
                tenant,
                response["model"],
                response["status"],
                Jsonb(response),
                Jsonb(input_items),
                response.get("previous_response_id"),
            ),
        )


async def get(pool: AsyncConnectionPool, tenant: str, response_id: str) -> ResponseRow | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(ResponseRow))
        await cur.execute(
            f"SELECT {_COLUMNS} FROM gateway.responses WHERE tenant_id = %s AND id = %s", (tenant, response_id)
        )
        return await cur.fetchone()


async def delete(pool: AsyncConnectionPool, tenant: str, response_id: str) -> bool:
    """Whether it existed. The responses that continue it keep their conversation."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM gateway.responses WHERE tenant_id = %s AND id = %s", (tenant, response_id)
        )
        return cur.rowcount > 0
