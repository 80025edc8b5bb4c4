"""The claims of a file batch's rows in real PostgreSQL: a worker's writes hold only while its claim
does. A worker whose claim was taken over (its lease lapsed) records nothing over the new
claimant's outcome and cannot give the new claim back; a cancel that lands while a late worker
writes wins, whichever of the two the database sees first, and a cancelled batch never has a file
started again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from ragtune_common.database import apply_migrations
from ragtune_gateway import repositories
from ragtune_gateway.repositories import file_batches as repository

LEASE_S = 60.0


@pytest_asyncio.fixture(loop_scope="session")
async def pool(gateway_database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    await apply_migrations(gateway_database_url, repositories.SCHEMA, "ragtune_gateway.migrations")
    async with AsyncConnectionPool(gateway_database_url, kwargs={"autocommit": True}, open=False) as pool:
        yield pool


async def _batch(pool: AsyncConnectionPool, files: int) -> tuple[str, str, str, list[str]]:
    """(tenant, store, batch, file ids) of a new batch, all files in progress and unclaimed."""
    tenant, store, batch = f"t-{uuid.uuid4().hex[:8]}", "vs_claims", f"vsfb_{uuid.uuid4().hex}"
    file_ids = [f"file-{uuid.uuid4().hex[:8]}" for _ in range(files)]
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO gateway.tenants (id, name) VALUES (%s, 'claims')", (tenant,))
    await repository.insert_batch(pool, batch, tenant, store, [(f, f"{f}.txt") for f in file_ids], None)
    return tenant, store, batch, file_ids


async def _lapse(pool: AsyncConnectionPool, batch: str) -> None:
    """Age every claim of the batch past the lease, as if its worker had stopped long ago."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE gateway.vector_store_file_batch_files SET claimed_at = now() - interval '1 hour'"
            " WHERE batch_id = %s AND claimed_at IS NOT NULL",
            (batch,),
        )


async def _file(pool: AsyncConnectionPool, batch: str, file_id: str) -> repository.BatchFileRow:
    rows = await repository.list_files(pool, batch, None, "", 100)
    return next(r for r in rows if r.file_id == file_id)


async def test_a_worker_whose_claim_was_taken_over_records_nothing(pool: AsyncConnectionPool) -> None:
    _, _, batch, (file_id,) = await _batch(pool, 1)
    old = await repository.claim_next_file(pool, batch, LEASE_S)
    assert old is not None and await repository.claim_next_file(pool, batch, LEASE_S) is None  # held
    await _lapse(pool, batch)
    new = await repository.claim_next_file(pool, batch, LEASE_S)
    assert new is not None and new.row.file_id == file_id and new.token != old.token

    # the old worker wakes up: its outcome and its give-back are both refused
    assert not await repository.finish_file(pool, old, "failed", error=("server_error", "late"))
    await repository.release_claims(pool, [old])
    assert await repository.claim_next_file(pool, batch, LEASE_S) is None, "the new claim was given back"
    assert (await _file(pool, batch, file_id)).status == "in_progress"

    assert await repository.finish_file(pool, new, "completed", usage_bytes=10, chunk_count=1)
    assert not await repository.finish_file(pool, old, "failed", error=("server_error", "later still"))
    row = await _file(pool, batch, file_id)
    assert (row.status, row.error_code, row.usage_bytes, row.chunk_count) == ("completed", None, 10, 1)


async def test_a_cancel_wins_over_a_worker_that_writes_after_it(pool: AsyncConnectionPool) -> None:
    tenant, store, batch, (first, second) = await _batch(pool, 2)
    claim = await repository.claim_next_file(pool, batch, LEASE_S)
    assert claim is not None and claim.row.file_id == first
    await _lapse(pool, batch)  # its worker looks gone: the cancel ends its file too
    assert await repository.cancel_batch(pool, tenant, store, batch, LEASE_S)
    assert not await repository.finish_file(pool, claim, "completed", usage_bytes=10, chunk_count=1)
    assert [(await _file(pool, batch, f)).status for f in (first, second)] == ["cancelled", "cancelled"]
    assert await repository.claim_next_file(pool, batch, LEASE_S) is None


async def test_a_claim_that_lapses_after_the_cancel_is_not_started_again(pool: AsyncConnectionPool) -> None:
    tenant, store, batch, (file_id,) = await _batch(pool, 1)
    claim = await repository.claim_next_file(pool, batch, LEASE_S)
    assert claim is not None
    assert await repository.cancel_batch(pool, tenant, store, batch, LEASE_S)
    assert (await _file(pool, batch, file_id)).status == "in_progress"  # its worker is still adding it
    await _lapse(pool, batch)  # ... and then stopped without a word
    assert await repository.claim_next_file(pool, batch, LEASE_S) is None
    assert (await _file(pool, batch, file_id)).status == "cancelled"
    assert not await repository.finish_file(pool, claim, "completed")


async def waiting_for_a_lock(pool: AsyncConnectionPool, table: str) -> None:
    """Return once a session of this database waits for a lock in a statement on ``table``."""
    async with pool.connection() as conn:
        for _ in range(500):
            cur = await conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND strpos(query, %s) > 0",
                (table,),
            )
            if await cur.fetchone():
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"no write on {table} ever waited for a lock")


async def test_a_cancel_in_flight_wins_over_the_late_write_it_blocks(
    pool: AsyncConnectionPool, gateway_database_url: str
) -> None:
    """The cancel's transaction holds the file row when the late worker's write arrives: the write
    waits, then finds the row cancelled and changes nothing (its WHERE clause is checked again on
    the row the cancel committed, unlike a read followed by a write)."""
    tenant, _, batch, (file_id,) = await _batch(pool, 1)
    claim = await repository.claim_next_file(pool, batch, LEASE_S)
    assert claim is not None
    await _lapse(pool, batch)
    async with await psycopg.AsyncConnection.connect(gateway_database_url) as cancel:
        await cancel.execute(
            "UPDATE gateway.vector_store_file_batches SET cancelled = true WHERE tenant_id = %s AND id = %s",
            (tenant, batch),
        )
        await cancel.execute(
            "UPDATE gateway.vector_store_file_batch_files SET status = 'cancelled', claim_token = NULL"
            " WHERE batch_id = %s AND status = 'in_progress'",
            (batch,),
        )
        late = asyncio.create_task(repository.finish_file(pool, claim, "completed", usage_bytes=1))
        await waiting_for_a_lock(pool, "vector_store_file_batch_files")
        await cancel.commit()
    assert await late is False
    row = await _file(pool, batch, file_id)
    assert (row.status, row.usage_bytes) == ("cancelled", 0)
