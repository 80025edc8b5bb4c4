"""Tenants and their API keys (stored hashed; the key itself is shown once, at creation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from ragtune_gateway import ids

KEY_REVOKED_CHANNEL = "ragtune_gateway_key_revoked"  # NOTIFY payload: the revoked key's sha256


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant_id: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
    expires_at: datetime | None = None


_KEY_COLUMNS = "id, tenant_id, prefix, created_at, revoked_at, expires_at"


async def create_tenant(pool: AsyncConnectionPool, tenant_id: str, name: str) -> Tenant | None:
    """The new tenant, or None if the id is taken."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(Tenant))
        await cur.execute(
            "INSERT INTO gateway.tenants (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING"
            " RETURNING id, name, created_at",
            (tenant_id, name),
        )
        return await cur.fetchone()


async def get_tenant(pool: AsyncConnectionPool, tenant_id: str) -> Tenant | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(Tenant))
        await cur.execute("SELECT id, name, created_at FROM gateway.tenants WHERE id = %s", (tenant_id,))
        return await cur.fetchone()


async def list_tenants(pool: AsyncConnectionPool) -> list[Tenant]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(Tenant))
        await cur.execute("SELECT id, name, created_at FROM gateway.tenants ORDER BY id")
        return await cur.fetchall()


async def create_key(
    pool: AsyncConnectionPool, tenant_id: str, expires_in_s: float | None = None
) -> tuple[ApiKey, str]:
    """A new key for the tenant: its record and the key itself (never stored). With
    ``expires_in_s`` it stops being valid that many seconds from now (:func:`extend_key`)."""
    key = ids.new_key()
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(ApiKey))
        await cur.execute(
            "INSERT INTO gateway.api_keys (id, tenant_id, key_hash, prefix, expires_at) VALUES (%s, %s, %s, %s,"
            " CASE WHEN %s::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => %s::float8) END)"
            f" RETURNING {_KEY_COLUMNS}",
            (ids.new_id(ids.API_KEY), tenant_id, ids.hash_key(key), key[:8], expires_in_s, expires_in_s),
        )
        row = await cur.fetchone()
    assert row is not None
    return row, key


async def list_keys(pool: AsyncConnectionPool, tenant_id: str) -> list[ApiKey]:
    """The tenant's keys (revoked ones too), oldest first; never the keys themselves."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(ApiKey))
        await cur.execute(
            f"SELECT {_KEY_COLUMNS} FROM gateway.api_keys WHERE tenant_id = %s ORDER BY created_at, id", (tenant_id,)
        )
        return await cur.fetchall()


async def revoke_key(pool: AsyncConnectionPool, key_id: str, tenant_id: str | None = None) -> tuple[ApiKey, str] | None:
    """Revoke the key (of ``tenant_id``, when given) and, in the same statement, notify every gateway
    process (:data:`KEY_REVOKED_CHANNEL`) so none serves it from its cache. The key and its hash, or None if
    there is none; revoking a revoked key changes nothing and notifies again."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "WITH revoked AS (UPDATE gateway.api_keys SET revoked_at = coalesce(revoked_at, now())"
            "  WHERE id = %s AND (%s::text IS NULL OR tenant_id = %s)"
            f"  RETURNING {_KEY_COLUMNS}, key_hash)"
            f" SELECT {_KEY_COLUMNS}, key_hash FROM revoked,"
            " pg_notify(%s, revoked.key_hash) AS notified",
            (key_id, tenant_id, tenant_id, KEY_REVOKED_CHANNEL),
        )
        row = await cur.fetchone()
    return (ApiKey(*row[:6]), str(row[6])) if row else None


async def extend_key(pool: AsyncConnectionPool, key_id: str, expires_in_s: float) -> bool:
    """Move an expiring, unrevoked, unexpired key's expiry to ``expires_in_s`` from now; False when
    it is no longer valid (revoked or expired keys are never brought back)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE gateway.api_keys SET expires_at = now() + make_interval(secs => %s::float8)"
            " WHERE id = %s AND revoked_at IS NULL AND expires_at > now()",
            (expires_in_s, key_id),
        )
        return cur.rowcount == 1


async def tenant_for_key_hash(pool: AsyncConnectionPool, key_hash: str) -> tuple[str, float | None] | None:
    """The tenant of a valid key (unrevoked, unexpired) and the seconds it stays valid (None: no expiry)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT tenant_id, extract(epoch FROM expires_at - now())::float8 FROM gateway.api_keys"
            " WHERE key_hash = %s AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
            (key_hash,),
        )
        row = await cur.fetchone()
    return (str(row[0]), None if row[1] is None else float(row[1])) if row else None


@dataclass(frozen=True)
class TenantSettings:
    """What a tenant's stored completions follow (migration 0008)."""

    tenant_id: str
    store_completions: bool
    completion_retention_days: int | None


_SETTINGS = "id AS tenant_id, store_completions, completion_retention_days"


async def get_settings(pool: AsyncConnectionPool, tenant_id: str) -> TenantSettings | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(TenantSettings))
        await cur.execute(f"SELECT {_SETTINGS} FROM gateway.tenants WHERE id = %s", (tenant_id,))
        return await cur.fetchone()


async def update_settings(
    pool: AsyncConnectionPool, tenant_id: str, changes: dict[str, bool | int | None]
) -> TenantSettings | None:
    """Sets the given settings (``store_completions``, ``completion_retention_days``); the others stay.
    None if there is no such tenant."""
    assert set(changes) <= {"store_completions", "completion_retention_days"}, changes
    sets = ", ".join(f"{name} = %({name})s" for name in changes) or "id = id"
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(TenantSettings))
        await cur.execute(
            f"UPDATE gateway.tenants SET {sets} WHERE id = %(tenant)s RETURNING {_SETTINGS}",
            {**changes, "tenant": tenant_id},
        )
        return await cur.fetchone()
