"""Evaluations as leased jobs, in real PostgreSQL: one worker at a time holds an evaluation; a
lease that lapses (its worker was killed) is taken over and the run's record carries on from what
the first worker wrote; every write of a worker that lost its lease — taken over, cancelled —
changes nothing, so a cancelled or finished evaluation is never moved back by a late writer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from ragtune_common.database import apply_migrations
from ragtune_gateway import repositories
from ragtune_gateway.repositories import evaluations as repository
from ragtune_gateway.services.evaluation_store import DbProgress, DbRunStore, LeaseLost

LEASE_S = 60.0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A database of this module's own: a claim takes the oldest evaluation of the whole queue."""
    name = f"leases_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(database_url, dbname=name)
    await apply_migrations(url, repositories.SCHEMA, "ragtune_gateway.migrations")
    async with AsyncConnectionPool(url, kwargs={"autocommit": True}, open=False) as pool:
        yield pool
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _queued(pool: AsyncConnectionPool) -> tuple[str, str]:
    """(tenant, evaluation id) of a new queued evaluation with a dataset; the queue holds nothing else."""
    tenant, evaluation_id = f"t-{uuid.uuid4().hex[:8]}", f"eval_{uuid.uuid4().hex}"
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("DELETE FROM gateway.evaluations")
        await conn.execute("INSERT INTO gateway.tenants (id, name) VALUES (%s, 'leases')", (tenant,))
        files = {"dataset.jsonl": ("application/json", b'{"question": "q", "answers": ["a"]}\n')}
        await repository.insert(conn, evaluation_id, tenant, {"arms": ["base"]}, files)
    return tenant, evaluation_id


async def _lapse(pool: AsyncConnectionPool, evaluation_id: str) -> None:
    """As if the holder had been killed a lease ago."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE gateway.evaluations SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
            (evaluation_id,),
        )


async def test_one_worker_at_a_time_claims_an_evaluation(pool: AsyncConnectionPool) -> None:
    _, evaluation_id = await _queued(pool)
    claims = await asyncio.gather(*(repository.claim(pool, f"worker-{i}", LEASE_S) for i in range(8)))
    won = [c for c in claims if c is not None]
    assert [c.id for c in won] == [evaluation_id]
    assert won[0].status == "running" and won[0].attempts == 1 and won[0].started_at is not None
    assert await repository.claim(pool, "late", LEASE_S) is None, "a live lease is not taken over"
    assert await repository.get_file(pool, evaluation_id, "dataset.jsonl") == (
        "application/json",
        b'{"question": "q", "answers": ["a"]}\n',
    )


async def test_a_lapsed_lease_is_resumed_elsewhere_and_the_old_worker_is_fenced(
    pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    _, evaluation_id = await _queued(pool)
    first = await repository.claim(pool, "a", LEASE_S)
    assert first is not None
    run_a = DbRunStore(pool, first, "a", tmp_path)
    await run_a.check_config({"seed": 1})
    await run_a.append_result("base", {"id": "q1", "split": "test", "f1": 1.0})
    run_a.state["store"] = {"id": "vs_1"}
    await run_a.save_state()

    await _lapse(pool, evaluation_id)  # "a" was killed
    second = await repository.claim(pool, "b", LEASE_S)
    assert second is not None and second.id == evaluation_id and second.attempts == 2
    run_b = DbRunStore(pool, second, "b", tmp_path)
    assert run_b.state == {"store": {"id": "vs_1"}}, "the state the first worker saved"
    await run_b.check_config({"seed": 1})
    assert await run_b.done("base") == {("test", "q1")}, "only the rest is asked again"
    with pytest.raises(ValueError, match="seed"):
        await run_b.check_config({"seed": 2})

    # "a" was only stalled: every write it still tries is refused, and it learns so
    for write in (
        run_a.append_result("base", {"id": "q2", "split": "test", "f1": 0.0}),
        run_a.save_state(),
    ):
        with pytest.raises(LeaseLost):
            await write
    assert not await repository.renew(pool, evaluation_id, "a", LEASE_S)
    assert not await repository.release(pool, evaluation_id, "a")
    assert not await repository.finish(pool, evaluation_id, "a", "failed", error="late")
    await run_b.append_result("base", {"id": "q2", "split": "test", "f1": 0.5})
    assert [r["id"] for r in await run_b.results("base")] == ["q1", "q2"]
    assert await repository.finish(pool, evaluation_id, "b", "succeeded", report={"ok": True})
    row = await repository.get(pool, None, evaluation_id)
    assert row is not None and (row.status, row.report, row.error) == ("succeeded", {"ok": True}, None)


async def test_a_cancel_wins_over_the_worker(pool: AsyncConnectionPool, tmp_path: Path) -> None:
    tenant, evaluation_id = await _queued(pool)
    claimed = await repository.claim(pool, "a", LEASE_S)
    assert claimed is not None
    progress = DbProgress(pool, evaluation_id, "a", {})
    progress.start("answer-base", "asking base", 4)
    await progress.drain()
    cancelled = await repository.cancel(pool, tenant, evaluation_id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert await repository.cancel(pool, tenant, evaluation_id) is None, "a cancelled evaluation stays so"

    report_files = {"report.md": ("text/markdown", b"# late")}
    assert not await repository.finish(pool, evaluation_id, "a", "succeeded", report={"late": 1}, files=report_files)
    assert not await repository.renew(pool, evaluation_id, "a", LEASE_S)  # its heartbeat stops the run
    with pytest.raises(LeaseLost):
        await DbRunStore(pool, claimed, "a", tmp_path).append_result("base", {"id": "q", "split": "test"})
    progress.update("answer-base", 4)
    await progress.drain()
    row = await repository.get(pool, tenant, evaluation_id)
    assert row is not None and (row.status, row.report) == ("cancelled", None)
    assert row.progress["steps"][0]["completed"] == 0, "no progress written after the cancel"
    assert await repository.get_file(pool, evaluation_id, "report.md") is None
    assert await repository.claim(pool, "b", LEASE_S) is None, "a cancelled evaluation is not run again"


async def test_a_given_back_lease_is_resumed_at_once_without_counting_an_attempt(pool: AsyncConnectionPool) -> None:
    _, evaluation_id = await _queued(pool)
    assert (await repository.claim(pool, "a", LEASE_S)) is not None
    assert await repository.release(pool, evaluation_id, "a")  # "a" stopped on purpose
    again = await repository.claim(pool, "b", LEASE_S)
    assert again is not None and again.id == evaluation_id and again.attempts == 1


async def test_deleting_an_evaluation_takes_its_record_and_files(pool: AsyncConnectionPool) -> None:
    tenant, evaluation_id = await _queued(pool)
    claimed = await repository.claim(pool, "a", LEASE_S)
    assert claimed is not None
    assert await repository.append_result(pool, evaluation_id, "a", "base", {"id": "q"})
    files = {"report.md": ("text/markdown", b"# done")}
    assert await repository.finish(pool, evaluation_id, "a", "succeeded", report={}, files=files)
    assert await repository.get_file(pool, evaluation_id, "report.md") == ("text/markdown", b"# done")
    assert await repository.delete_finished(pool, tenant, evaluation_id)
    async with pool.connection() as conn:
        for table in ("evaluation_files", "evaluation_results"):
            cur = await conn.execute(f"SELECT count(*) FROM gateway.{table} WHERE evaluation_id = %s", (evaluation_id,))
            assert (await cur.fetchone()) == (0,), table
