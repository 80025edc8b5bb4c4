"""File records of the tenants and the bytes of their documents (``gateway.file_chunks``, written in
the transaction that inserts the row, so a file is never listed without all of its bytes; deleted
with it). A fine-tune file's bytes live in the trainer, under the same id."""

from __future__ import annotations

from collections.abc import AsyncIterator
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


async def insert_document(
    pool: AsyncConnectionPool,
    file_id: str,
    tenant_id: str,
    filename: str,
    purpose: str,
    mime_type: str,
    chunks: AsyncIterator[bytes],
) -> FileRecord:
    """The row and every chunk of ``chunks`` in one transaction: an exception raised by ``chunks``
    (too large, empty) leaves nothing behind. ``bytes`` is the chunks' total length."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO gateway.files (id, tenant_id, filename, purpose, bytes, mime_type, created_at)"
            " VALUES (%s, %s, %s, %s, 0, %s, now())",
            (file_id, tenant_id, filename, purpose, mime_type),
        )
        size, seq = 0, 0
        async for chunk in chunks:
            await conn.execute(
                "INSERT INTO gateway.file_chunks (file_id, seq, data) VALUES (%s, %s, %b)", (file_id, seq, chunk)
            )
            size, seq = size + len(chunk), seq + 1
        cur = conn.cursor(row_factory=class_row(FileRecord))
        await cur.execute(
            f"UPDATE gateway.files SET bytes = %s WHERE id = %s RETURNING {_FILE_COLUMNS}", (size, file_id)
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def read_content(pool: AsyncConnectionPool, file_id: str) -> bytes | None:
    """A document's bytes; None when none are stored (a fine-tune file, or a file kept on a gateway's
    disk by an older version and not imported)."""
    async with pool.connection() as conn:
        cur = conn.cursor(binary=True)
        await cur.execute("SELECT data FROM gateway.file_chunks WHERE file_id = %s ORDER BY seq", (file_id,))
        parts = [bytes(row[0]) for row in await cur.fetchall()]
    return b"".join(parts) if parts else None


async def import_content(pool: AsyncConnectionPool, file_id: str, data: bytes, chunk_bytes: int) -> bool:
    """Store the bytes of an existing document row that has none (an upgrade from a version that kept
    them on a gateway's disk); False if there is no such row or it has bytes already."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT 1 FROM gateway.files f WHERE id = %s AND purpose <> 'fine-tune'"
            " AND NOT EXISTS (SELECT 1 FROM gateway.file_chunks c WHERE c.file_id = f.id) FOR UPDATE",
            (file_id,),
        )
        if await cur.fetchone() is None:
            return False
        for seq, start in enumerate(range(0, len(data), chunk_bytes)):
            await conn.execute(
                "INSERT INTO gateway.file_chunks (file_id, seq, data) VALUES (%s, %s, %b)",
                (file_id, seq, data[start : start + chunk_bytes]),
            )
    return True


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
