"""File records of the tenants (the bytes of documents live in the files directory; a fine-tune
file's bytes live in the trainer, under the same id)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool


@dataclass(frozen=True)
class FileRecord:
    id: str
    tenant_id: str
    filename: str
    purpose: str
    bytes: int
    mime_type: str
    created_at: datetime


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
