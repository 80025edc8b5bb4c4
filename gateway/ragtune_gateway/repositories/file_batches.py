"""File batches of vector stores and the outcome of each of their files (SQL only).

A file row is ``in_progress`` until the replica that claimed it records ``completed`` or
``failed``; a cancel turns the rows nobody is adding into ``cancelled``. A claim older than
``lease_s`` is taken over (its replica stopped), so every batch ends. Every claim carries a new
token, and every write of a claimant names it in its WHERE clause with the state it leaves
(``in_progress``): a replica whose claim was taken over, or whose file a cancel has finished,
writes nothing and is told so (False)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

STATUSES = ("in_progress", "completed", "failed", "cancelled")


@dataclass(frozen=True)
class BatchRow:
    id: str
    tenant_id: str
    vector_store_id: str
    attributes: dict[str, Any] | None
    cancelled: bool
    created_at: datetime
    in_progress: int
    completed: int
    failed: int
    cancelled_files: int
    total: int


@dataclass(frozen=True)
class BatchFileRow:
    batch_id: str
    file_id: str
    position: int
    filename: str
    status: str
    error_code: str | None
    error_message: str | None
    usage_bytes: int
    chunk_count: int
    updated_at: datetime


@dataclass(frozen=True)
class FileClaim:
    """A file this replica has claimed: its writes hold only while the row still carries ``token``."""

    row: BatchFileRow
    token: UUID


_BATCH_SELECT = (
    "SELECT b.id, b.tenant_id, b.vector_store_id, b.attributes, b.cancelled, b.created_at,"
    " count(*) FILTER (WHERE f.status = 'in_progress')::int AS in_progress,"
    " count(*) FILTER (WHERE f.status = 'completed')::int AS completed,"
    " count(*) FILTER (WHERE f.status = 'failed')::int AS failed,"
    " count(*) FILTER (WHERE f.status = 'cancelled')::int AS cancelled_files,"
    " count(f.file_id)::int AS total"
    " FROM gateway.vector_store_file_batches b"
    " LEFT JOIN gateway.vector_store_file_batch_files f ON f.batch_id = b.id"
)
_FILE_COLUMNS = (
    "batch_id, file_id, position, filename, status, error_code, error_message, usage_bytes, chunk_count, updated_at"
)
_LAPSED = "(claimed_at IS NULL OR claimed_at < now() - make_interval(secs => %(l)s))"  # nobody is adding it


async def insert_batch(
    pool: AsyncConnectionPool,
    batch_id: str,
    tenant_id: str,
    store_id: str,
    files: list[tuple[str, str]],
    attributes: dict[str, Any] | None,
) -> None:
    """The batch and its files ((file id, filename), in order), all ``in_progress``, in one transaction."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO gateway.vector_store_file_batches (id, tenant_id, vector_store_id, attributes)"
            " VALUES (%s, %s, %s, %s)",
            (batch_id, tenant_id, store_id, Jsonb(attributes) if attributes is not None else None),
        )
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO gateway.vector_store_file_batch_files (batch_id, file_id, position, filename)"
                " VALUES (%s, %s, %s, %s)",
                [(batch_id, file_id, i, filename) for i, (file_id, filename) in enumerate(files)],
            )


async def get_batch(pool: AsyncConnectionPool, tenant_id: str, store_id: str, batch_id: str) -> BatchRow | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(BatchRow))
        await cur.execute(
            f"{_BATCH_SELECT} WHERE b.tenant_id = %s AND b.vector_store_id = %s AND b.id = %s GROUP BY b.id",
            (tenant_id, store_id, batch_id),
        )
        return await cur.fetchone()


async def cancel_batch(pool: AsyncConnectionPool, tenant_id: str, store_id: str, batch_id: str, lease_s: float) -> bool:
    """Mark the batch cancelled and the files nobody is adding ``cancelled`` (those claimed within
    ``lease_s`` are finished by their claimant); False if there is no such batch."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE gateway.vector_store_file_batches SET cancelled = true"
            " WHERE tenant_id = %s AND vector_store_id = %s AND id = %s",
            (tenant_id, store_id, batch_id),
        )
        if cur.rowcount == 0:
            return False
        await conn.execute(
            "UPDATE gateway.vector_store_file_batch_files"
            " SET status = 'cancelled', claimed_at = NULL, claim_token = NULL, updated_at = now()"
            f" WHERE batch_id = %(b)s AND status = 'in_progress' AND {_LAPSED}",
            {"b": batch_id, "l": lease_s},
        )
    return True


async def list_files(
    pool: AsyncConnectionPool, batch_id: str, status: str | None, after: str, limit: int
) -> list[BatchFileRow]:
    """The batch's files in the order given, from after the file ``after``."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(BatchFileRow))
        await cur.execute(
            f"SELECT {_FILE_COLUMNS} FROM gateway.vector_store_file_batch_files WHERE batch_id = %(b)s"
            " AND (%(s)s::text IS NULL OR status = %(s)s)"
            " AND (%(a)s = '' OR position > (SELECT position FROM gateway.vector_store_file_batch_files"
            "      WHERE batch_id = %(b)s AND file_id = %(a)s))"
            " ORDER BY position LIMIT %(n)s",
            {"b": batch_id, "s": status, "a": after, "n": limit},
        )
        return await cur.fetchall()


_CLAIM = (  # in a batch cancelled since, the file is turned cancelled instead (claim_token stays NULL)
    "WITH next AS (SELECT f.batch_id, f.file_id, b.cancelled"
    "   FROM gateway.vector_store_file_batch_files f JOIN gateway.vector_store_file_batches b ON b.id = f.batch_id"
    "   WHERE f.batch_id = %(b)s AND f.status = 'in_progress'"
    "   AND (f.claimed_at IS NULL OR f.claimed_at < now() - make_interval(secs => %(l)s))"
    "   ORDER BY f.position LIMIT 1 FOR UPDATE OF f SKIP LOCKED)"
    " UPDATE gateway.vector_store_file_batch_files f SET"
    "  status = CASE WHEN next.cancelled THEN 'cancelled' ELSE 'in_progress' END,"
    "  claimed_at = CASE WHEN next.cancelled THEN NULL ELSE now() END,"
    "  claim_token = CASE WHEN next.cancelled THEN NULL ELSE gen_random_uuid() END,"
    "  updated_at = now()"
    " FROM next WHERE f.batch_id = next.batch_id AND f.file_id = next.file_id"
    " RETURNING f.batch_id, f.file_id, f.position, f.filename, f.status, f.error_code, f.error_message,"
    "  f.usage_bytes, f.chunk_count, f.updated_at, f.claim_token"
)


async def claim_next_file(pool: AsyncConnectionPool, batch_id: str, lease_s: float) -> FileClaim | None:
    """The batch's next file nobody is adding (or whose claim is older than ``lease_s``), now claimed
    under a new token; None when no file is left. In a batch cancelled since, such a file is turned
    ``cancelled`` instead of claimed (its claimant stopped after the cancel)."""
    async with pool.connection() as conn:
        while True:
            cur = await conn.execute(_CLAIM, {"b": batch_id, "l": lease_s})
            found = await cur.fetchone()
            if found is None:
                return None
            if found[-1] is not None:
                return FileClaim(BatchFileRow(*found[:-1]), found[-1])


async def finish_file(
    pool: AsyncConnectionPool,
    claim: FileClaim,
    status: str,
    *,
    error: tuple[str, str] | None = None,
    usage_bytes: int = 0,
    chunk_count: int = 0,
) -> bool:
    """Record a claimed file's outcome (``completed`` or ``failed`` with (code, message)). False,
    writing nothing, when the claim is no longer this one (taken over, or the file already final)."""
    code, message = error or (None, None)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE gateway.vector_store_file_batch_files SET status = %s, error_code = %s, error_message = %s,"
            " usage_bytes = %s, chunk_count = %s, claimed_at = NULL, claim_token = NULL, updated_at = now()"
            " WHERE batch_id = %s AND file_id = %s AND status = 'in_progress' AND claim_token = %s",
            (status, code, message, usage_bytes, chunk_count, claim.row.batch_id, claim.row.file_id, claim.token),
        )
        return cur.rowcount == 1


async def release_claims(pool: AsyncConnectionPool, claims: list[FileClaim]) -> None:
    """Give back the claims of files not finished (a gateway that stops); one taken over since stays."""
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.executemany(
            "UPDATE gateway.vector_store_file_batch_files SET claimed_at = NULL, claim_token = NULL"
            " WHERE batch_id = %s AND file_id = %s AND status = 'in_progress' AND claim_token = %s",
            [(c.row.batch_id, c.row.file_id, c.token) for c in claims],
        )


async def unfinished_batch_ids(pool: AsyncConnectionPool) -> list[str]:
    """Batches with files still to add (for a gateway that starts: it finishes them)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT DISTINCT batch_id FROM gateway.vector_store_file_batch_files WHERE status = 'in_progress'"
        )
        return [str(r[0]) for r in await cur.fetchall()]


async def batch_context(pool: AsyncConnectionPool, batch_id: str) -> tuple[str, str, dict[str, Any] | None] | None:
    """(tenant, store, attributes) of a batch, for the worker that adds its files."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT tenant_id, vector_store_id, attributes FROM gateway.vector_store_file_batches WHERE id = %s",
            (batch_id,),
        )
        row = await cur.fetchone()
    return (str(row[0]), str(row[1]), row[2]) if row else None
