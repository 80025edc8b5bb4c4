"""The gateway's SQL (schema ``gateway``): tenants, hashed API keys, and file records."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

SCHEMA = "gateway"
KEY_PREFIX = "rt-"
KEY_REVOKED_CHANNEL = "ragtune_gateway_key_revoked"  # NOTIFY payload: the revoked key's sha256


def hash_key(key: str) -> str:
    """Keys are 256 random bits, so a plain sha256 is enough at rest (no dictionary to guess from)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_id(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}{secrets.token_hex(nbytes)}"


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


_KEY_COLUMNS = "id, tenant_id, prefix, created_at, revoked_at"


@dataclass(frozen=True)
class FileRecord:
    id: str
    tenant_id: str
    filename: str
    purpose: str
    bytes: int
    mime_type: str
    created_at: datetime


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


async def create_key(pool: AsyncConnectionPool, tenant_id: str) -> tuple[ApiKey, str]:
    """A new key for the tenant: its record and the key itself (never stored)."""
    key = new_key()
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(ApiKey))
        await cur.execute(
            "INSERT INTO gateway.api_keys (id, tenant_id, key_hash, prefix) VALUES (%s, %s, %s, %s)"
            f" RETURNING {_KEY_COLUMNS}",
            (new_id("key_"), tenant_id, hash_key(key), key[:8]),
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
    return (ApiKey(*row[:5]), str(row[5])) if row else None


async def tenant_for_key_hash(pool: AsyncConnectionPool, key_hash: str) -> str | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT tenant_id FROM gateway.api_keys WHERE key_hash = %s AND revoked_at IS NULL", (key_hash,)
        )
        row = await cur.fetchone()
    return str(row[0]) if row else None


_FILE_COLUMNS = "id, tenant_id, filename, purpose, bytes, mime_type, created_at"


async def insert_file(
    pool: AsyncConnectionPool, file_id: str, tenant_id: str, filename: str, purpose: str, size: int, mime_type: str
) -> FileRecord:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(FileRecord))
        await cur.execute(
            f"INSERT INTO gateway.files ({_FILE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, now())"
            f" RETURNING {_FILE_COLUMNS}",
            (file_id, tenant_id, filename, purpose, size, mime_type),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def get_file(pool: AsyncConnectionPool, tenant_id: str, file_id: str) -> FileRecord | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(FileRecord))
        await cur.execute(
            f"SELECT {_FILE_COLUMNS} FROM gateway.files WHERE tenant_id = %s AND id = %s", (tenant_id, file_id)
        )
        return await cur.fetchone()


async def list_files(
    pool: AsyncConnectionPool, tenant_id: str, purpose: str | None, after: str, limit: int
) -> list[FileRecord]:
    """Oldest first (ids are random, so the order is by creation time, then id)."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(FileRecord))
        await cur.execute(
            f"SELECT {_FILE_COLUMNS} FROM gateway.files f WHERE tenant_id = %(t)s"
            " AND (%(p)s::text IS NULL OR purpose = %(p)s)"
            " AND (%(a)s = '' OR (created_at, id) > (SELECT created_at, id FROM gateway.files"
            "      WHERE tenant_id = %(t)s AND id = %(a)s))"
            " ORDER BY created_at, id LIMIT %(n)s",
            {"t": tenant_id, "p": purpose, "a": after, "n": limit},
        )
        return await cur.fetchall()


async def delete_file(pool: AsyncConnectionPool, tenant_id: str, file_id: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("DELETE FROM gateway.files WHERE tenant_id = %s AND id = %s", (tenant_id, file_id))
        return cur.rowcount > 0


async def delete_files(pool: AsyncConnectionPool, tenant_id: str, file_ids: list[str]) -> list[str]:
    """Delete those of the tenant's files that exist; their ids."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM gateway.files WHERE tenant_id = %s AND id = ANY(%s) RETURNING id", (tenant_id, file_ids)
        )
        return [str(r[0]) for r in await cur.fetchall()]
