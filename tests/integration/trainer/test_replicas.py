"""Trainer replicas share one job queue in PostgreSQL: each takes one job at a time under a lease;
when the replica training a job is killed, another takes the job over once the lease has expired
and resumes it from the last checkpoint recorded before the kill; the job's events say so."""

from __future__ import annotations

import asyncio
import time

import pytest
from psycopg_pool import AsyncConnectionPool

from ragtune.trainer.v1 import trainer_pb2 as pb
from ragtune_common.database import apply_migrations
from ragtune_trainer import leases, store
from ragtune_trainer.jobspec import JobConfig
from ragtune_trainer.store import DatasetRow, LeaseLost
from tests.integration.trainer.helpers import collect_events, colour_lines, job_request, number, upload
from tests.integration.trainer.replicas import (
    own_database,
    processes_running,
    replica_env,
    start_replicas,
    stop_all,
)
from tests.ports import free_port

LEASE_S = 8


async def _queued_jobs(pool: AsyncConnectionPool, count: int) -> list[str]:
    dataset = DatasetRow("file-q", "t", "d.jsonl", "chat", "upload", "/nowhere", 2, 10, 10, 5, None)  # type: ignore[arg-type]
    await store.insert_dataset(pool, dataset)
    config = JobConfig(
        n_epochs=1,
        batch_size=1,
        learning_rate_multiplier=1,
        learning_rate=1e-4,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
    )
    return [(await store.insert_job(pool, f"ftjob-{i}", "t", "m", "file-q", None, config)).id for i in range(count)]


async def test_leases_hand_each_job_to_one_replica_and_expired_ones_to_the_next(database_url):
    async with own_database(database_url, "trainer_leases") as url:
        await apply_migrations(url, "trainer", "ragtune_trainer.migrations")
        async with AsyncConnectionPool(url, kwargs={"autocommit": True}, open=False) as pool:
            first, second = await _queued_jobs(pool, 2)
            a, b = await asyncio.gather(
                leases.claim_next_job(pool, "replica-a", 1), leases.claim_next_job(pool, "replica-b", 1)
            )
            assert a and b and {a.job.id, b.job.id} == {first, second}, "two replicas took the same job"
            assert a.previous_owner is None and a.job.lease_owner == "replica-a"
            assert await leases.claim_next_job(pool, "replica-c", 1) is None, "both jobs are leased"
            assert await leases.queue_depth(pool) == 0

            # A replica writes only while it holds the lease; a taken-over job fences the old holder out.
            await store.update_job(pool, a.job.id, {"step": 1}, [], owner="replica-a")
            with pytest.raises(LeaseLost):
                await store.update_job(pool, a.job.id, {"step": 2}, [], owner="replica-b")
            assert await leases.renew_lease(pool, a.job.id, "replica-a", 1)
            await asyncio.sleep(1.5)  # both leases expire (b's was never renewed)
            assert await leases.queue_depth(pool) == 2
            c = await leases.claim_next_job(pool, "replica-c", 30)
            assert c is not None and c.previous_owner in ("replica-a", "replica-b")
            assert not await leases.renew_lease(pool, c.job.id, c.previous_owner or "", 30)
            with pytest.raises(LeaseLost):
                await store.update_job(pool, c.job.id, {"step": 3}, [], owner=c.previous_owner)
            await leases.release_lease(pool, c.job.id, "replica-c")
            again = await leases.claim_next_job(pool, "replica-a", 30)
            assert again is not None and again.previous_owner is None  # given back, not expired


async def test_killed_replica_job_is_resumed_by_the_other_from_its_last_checkpoint(
    database_url, state_dir, base_model_dir, tmp_path
):
    async with own_database(database_url, "trainer_replicas") as url:
        envs = [
            replica_env(url, state_dir, tmp_path, name, free_port(), RAGTUNE_TRAINER_LEASE_S=str(LEASE_S))
            for name in ("replica-a", "replica-b")
        ]
        replicas = await start_replicas(envs)
        channels = []
        try:
            stubs = {}
            for replica in replicas:
                channel, stub = replica.stub()
                channels.append(channel)
                stubs[replica.name] = stub
            front = stubs["replica-a"]
            dataset = (await upload(front, colour_lines(), "default")).dataset
            hyper = pb.Hyperparameters(n_epochs=number(3), batch_size=number(2), learning_rate_multiplier=number(10))
            request = job_request("default", dataset.id, hyperparameters=hyper, checkpoint_interval_steps=2)
            job = (await front.CreateJob(request)).job
            assert job.total_steps == 9

            async def first_checkpoint() -> None:
                async for event in front.WatchJob(pb.WatchJobRequest(id=job.id)):
                    if event.WhichOneof("event") == "checkpoint":
                        return
                raise AssertionError("the job ended before its first checkpoint")

            await asyncio.wait_for(first_checkpoint(), 300)
            holder = (await front.GetJob(pb.GetJobRequest(id=job.id))).job.replica
            assert holder in stubs, f"no replica holds the running job: {holder!r}"
            victim = next(r for r in replicas if r.name == holder)
            survivor = next(r for r in replicas if r.name != holder)
            victim.kill()
            killed_at = time.time()
            spec = f"jobs/{job.id}/spec.json"
            for _ in range(50):  # the training process dies with its replica (parent-death signal)
                if not list(processes_running(spec)):
                    break
                await asyncio.sleep(0.1)
            stub = stubs[survivor.name]
            recorded = (await stub.ListCheckpoints(pb.ListCheckpointsRequest(job_id=job.id))).checkpoints
            assert recorded, "a checkpoint was recorded before the kill"
            last_step = recorded[-1].step

            events = await collect_events(stub, "default", job.id, timeout_s=400)
            done = (await stub.GetJob(pb.GetJobRequest(id=job.id))).job
        finally:
            for channel in channels:
                await channel.close()  # type: ignore[attr-defined]
            stop_all(replicas)

    assert done.status == pb.JOB_STATUS_SUCCEEDED, done.error
    assert done.step == 9 and done.resume_count == 1 and done.replica == ""
    assert done.publish_state == pb.PUBLISH_STATE_FAILED, "no generator answers here: publishing fails, not the job"
    notes = [(e, e.message) for e in events if e.WhichOneof("event") == "message"]
    handover = [
        (e, n)
        for e, n in notes
        if f"replica {survivor.name} took the job over from replica {victim.name} (its lease expired)" in n
    ]
    assert len(handover) == 1, [n for _, n in notes]
    event, note = handover[0]
    assert f"resuming from checkpoint at step {last_step}" in note, note
    assert event.created_at.seconds - killed_at < 60, "the job must move on within a minute"
    after = [e for e in events if e.seq > event.seq]
    started = [e.started for e in after if e.WhichOneof("event") == "started"]
    assert started and started[0].resumed_from_step == last_step
    steps = [e.progress.step for e in after if e.WhichOneof("event") == "progress"]
    assert steps == list(range(last_step + 1, 10)), "the resumed run continues after the checkpoint"
    statuses = [e.status.status for e in events if e.WhichOneof("event") == "status"]
    assert pb.JOB_STATUS_CANCELLED not in statuses and statuses[-1] == pb.JOB_STATUS_SUCCEEDED
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
