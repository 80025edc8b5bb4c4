"""A fine-tuning job's status changes are conditional, in real PostgreSQL: a job a request has
cancelled is never moved again by the training worker's late writes (each refused with
JobFinished, nothing written, no event added), a finished job never changes status, and a cancel
requested while the job trains wins over its outcome, up to the moment the trained adapter is
recorded (after which the cancel is refused and the job succeeds). The worker (JobRunner) that
loses stops quietly and writes nothing more."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from ragtune_common.database import apply_migrations
from ragtune_common.errors import FailedPrecondition
from ragtune_trainer import leases, store
from ragtune_trainer.jobspec import JobConfig
from ragtune_trainer.runner import JobRunner
from ragtune_trainer.settings import TrainerSettings
from ragtune_trainer.store import DatasetRow, JobFinished
from tests.integration.trainer.replicas import own_database

OWNER = "replica-a"
RELEASED = {"lease_owner": None, "lease_expires_at": None}
CONFIG = JobConfig(
    n_epochs=1, batch_size=1, learning_rate_multiplier=1, learning_rate=1e-4, lora_r=8, lora_alpha=16, lora_dropout=0.0
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def database(database_url: str) -> AsyncIterator[str]:
    async with own_database(database_url, "trainer_transitions") as url:
        await apply_migrations(url, "trainer", "ragtune_trainer.migrations")
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def pool(database: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(database, kwargs={"autocommit": True}, open=False) as pool:
        yield pool


_count = 0


async def _leased_job(pool: AsyncConnectionPool) -> str:
    """A new queued job, leased by OWNER (as the worker that is about to train it)."""
    global _count
    _count += 1
    tenant, dataset = f"t{_count}", f"file-{_count}"
    await store.insert_dataset(
        pool,
        DatasetRow(dataset, tenant, "d.jsonl", "chat", "upload", "/nowhere", 2, 10, 10, 5, None),  # type: ignore[arg-type]
    )
    job = await store.insert_job(pool, f"ftjob-{_count}", tenant, "m", dataset, None, CONFIG)
    claim = await leases.claim_next_job(pool, OWNER, 60)
    assert claim is not None and claim.job.id == job.id
    return job.id


async def _running(pool: AsyncConnectionPool, job_id: str) -> None:
    assert await store.claim_job(pool, job_id, OWNER)
    await store.update_job(pool, job_id, {"status": "running"}, [("status", {"status": "running"})], OWNER)


async def _statuses(pool: AsyncConnectionPool, job_id: str) -> list[str]:
    return [e.data["status"] for e in await store.events_after(pool, job_id, 0) if e.kind == "status"]


async def _refused(pool: AsyncConnectionPool, job_id: str, changes: dict[str, object]) -> None:
    status = changes.get("status", "")
    with pytest.raises(JobFinished):
        await store.update_job(pool, job_id, changes, [("status", {"status": status})], OWNER)


async def test_late_worker_writes_never_move_a_job_a_request_cancelled(pool: AsyncConnectionPool) -> None:
    job_id = await _leased_job(pool)
    tenant = (await store.get_job(pool, None, job_id)).tenant
    assert (await store.request_cancel(pool, tenant, job_id)).status == "cancelled"
    # the worker took the job before the cancel and now writes what it would have
    with pytest.raises(JobFinished):
        await store.claim_job(pool, job_id, OWNER)
    await _refused(pool, job_id, {"status": "running"})
    await _refused(pool, job_id, {"step": 3, "train_loss": 1.5})
    await _refused(pool, job_id, {"status": "succeeded", "finished_at": "now()", **RELEASED})
    await _refused(pool, job_id, {"status": "failed", "error": {"code": "x", "message": "late", "param": ""}})
    with pytest.raises(JobFinished):
        await store.add_checkpoint(pool, job_id, 3, "/nowhere/checkpoint-3", [], OWNER)
    job = await store.get_job(pool, None, job_id)
    assert (job.status, job.step, job.error) == ("cancelled", 0, None)
    assert await _statuses(pool, job_id) == ["queued", "cancelled"]
    assert await store.list_checkpoints(pool, job_id) == []


async def test_a_finished_job_never_changes_status(pool: AsyncConnectionPool) -> None:
    job_id = await _leased_job(pool)
    await _running(pool, job_id)
    await store.update_job(pool, job_id, {"status": "failed", "finished_at": "now()"}, [], OWNER)
    for status in ("running", "succeeded", "cancelled", "failed"):
        await _refused(pool, job_id, {"status": status})
    with pytest.raises(JobFinished):  # not even by a writer that holds no lease
        await store.update_job(pool, job_id, {"status": "succeeded"}, [])
    with pytest.raises(FailedPrecondition):
        await store.request_cancel(pool, (await store.get_job(pool, None, job_id)).tenant, job_id)
    assert (await store.get_job(pool, None, job_id)).status == "failed"


async def test_a_cancel_requested_during_training_wins_over_its_outcome(pool: AsyncConnectionPool) -> None:
    job_id = await _leased_job(pool)
    await _running(pool, job_id)
    tenant = (await store.get_job(pool, None, job_id)).tenant
    assert (await store.request_cancel(pool, tenant, job_id)).status == "running"  # flagged for the worker
    trained = {"adapter_path": "/nowhere/adapter", "fine_tuned_model": "ft:m:x", "step": 4}
    assert not await store.record_trained(pool, job_id, trained, OWNER)
    await store.update_job(pool, job_id, {"status": "cancelled", "finished_at": "now()"}, [], OWNER)
    job = await store.get_job(pool, None, job_id)
    assert (job.status, job.adapter_path, job.step) == ("cancelled", None, 0)


async def test_once_trained_a_cancel_is_refused_and_the_job_succeeds(pool: AsyncConnectionPool) -> None:
    job_id = await _leased_job(pool)
    await _running(pool, job_id)
    tenant = (await store.get_job(pool, None, job_id)).tenant
    assert await store.record_trained(pool, job_id, {"adapter_path": "/nowhere/adapter", "step": 4}, OWNER)
    with pytest.raises(FailedPrecondition, match="publishing"):
        await store.request_cancel(pool, tenant, job_id)
    await store.update_job(pool, job_id, {"status": "succeeded", "finished_at": "now()", **RELEASED}, [], OWNER)
    assert (await store.get_job(pool, None, job_id)).status == "succeeded"


async def _waiting_for_a_lock(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        for _ in range(500):
            cur = await conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if await cur.fetchone():
                return
            await asyncio.sleep(0.02)
    raise AssertionError("the late write never waited for the cancel's row lock")


@pytest.mark.parametrize("late_write", ["claim", "finish"])
async def test_a_cancel_in_flight_wins_over_the_late_write_it_blocks(
    pool: AsyncConnectionPool, database: str, late_write: str
) -> None:
    """The cancel holds the job's row when the worker's write arrives: the write waits, then sees
    the cancelled row and changes nothing."""
    job_id = await _leased_job(pool)
    async with await psycopg.AsyncConnection.connect(database) as cancel:  # request_cancel, not yet committed
        await cancel.execute("SELECT status FROM trainer.jobs WHERE id = %s FOR UPDATE", (job_id,))
        await cancel.execute(
            "UPDATE trainer.jobs SET status = 'cancelled', cancel_requested = true, finished_at = now()"
            " WHERE id = %s AND status = 'queued'",
            (job_id,),
        )
        finish = {"status": "failed", "finished_at": "now()", **RELEASED}
        write: Coroutine[Any, Any, object] = (
            store.claim_job(pool, job_id, OWNER)
            if late_write == "claim"
            else store.update_job(pool, job_id, finish, [("status", {"status": "failed"})], OWNER)
        )
        late = asyncio.create_task(write)
        await _waiting_for_a_lock(pool)
        await cancel.commit()
    with pytest.raises(JobFinished):
        await late
    job = await store.get_job(pool, None, job_id)
    assert (job.status, job.lease_owner) == ("cancelled", OWNER)
    assert await _statuses(pool, job_id) == ["queued"]  # the cancel's own event is request_cancel's to write


def _runner(pool: AsyncConnectionPool, database: str, tmp_path: Path) -> JobRunner:
    settings = TrainerSettings(
        database_url=database,
        state_dir=tmp_path,
        replica_id=OWNER,
        generator_address="127.0.0.1:1",  # publishing would fail (and be recorded): it must not be tried
        publish_timeout_s=1,
    )
    return JobRunner(pool, settings, lambda _: tmp_path / "no-model")


async def test_a_worker_that_lost_its_job_to_a_cancel_stops_without_writing(
    pool: AsyncConnectionPool, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = _runner(pool, database, tmp_path)
    claim_next_job = leases.claim_next_job
    cancelled: list[str] = []

    async def claim_then_cancelled(*args: Any) -> leases.Claim | None:  # the cancel lands just after the lease
        claim = await claim_next_job(*args)
        if claim is not None:
            cancelled.append((await store.request_cancel(pool, claim.job.tenant, claim.job.id)).status)
        return claim

    job_id = await _leased_job(pool)
    await leases.release_lease(pool, job_id, OWNER)
    monkeypatch.setattr(leases, "claim_next_job", claim_then_cancelled)
    assert await runner._take_next()
    job = await store.get_job(pool, None, job_id)
    assert cancelled == ["cancelled"] and (job.status, job.lease_owner) == ("cancelled", None)
    assert await _statuses(pool, job_id) == ["queued", "cancelled"]


async def test_a_worker_whose_training_ends_after_a_cancel_request_ends_the_job_cancelled(
    pool: AsyncConnectionPool, database: str, tmp_path: Path
) -> None:
    runner = _runner(pool, database, tmp_path)
    job_id = await _leased_job(pool)
    await _running(pool, job_id)
    job = await store.get_job(pool, None, job_id)
    await store.request_cancel(pool, job.tenant, job_id)
    await runner._complete(job, {"adapter_path": str(tmp_path / "adapter"), "step": 4, "trained_tokens": 100})
    job = await store.get_job(pool, None, job_id)
    assert (job.status, job.adapter_path, job.publish_state) == ("cancelled", None, "pending")
    assert await _statuses(pool, job_id) == ["queued", "validating_files", "running", "cancelled"]
