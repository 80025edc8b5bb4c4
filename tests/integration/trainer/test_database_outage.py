"""PostgreSQL stopped for ten seconds while a job trains: the training goes on (its events wait in
the replica and are written once the database is back), the job is not taken for cancelled, and it
succeeds with every step recorded, in order."""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.request

import grpc
import pytest

from ragtune.trainer.v1 import trainer_pb2 as pb
from tests.fixtures.database import stop_embedded
from tests.integration.trainer.helpers import FINAL, colour_lines, job_request, number, upload
from tests.integration.trainer.replicas import own_database, replica_env, start_replicas, stop_all
from tests.ports import free_port

OUTAGE_S = 10


def _gauge(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not exported"
    return float(match.group(1))


async def _final_job(stub, job_id: str, timeout_s: float) -> pb.Job:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(grpc.aio.AioRpcError):  # UNAVAILABLE until the pool reconnects
            job = (await stub.GetJob(pb.GetJobRequest(id=job_id))).job
            if job.status in FINAL:
                return job
        await asyncio.sleep(0.5)
    raise AssertionError(f"job {job_id} not final after {timeout_s}s")


async def test_database_outage_during_training_loses_nothing(
    database_url, pg_server, state_dir, base_model_dir, tmp_path
):
    if pg_server is None:
        pytest.skip("needs the embedded PostgreSQL, which this test stops and restarts (a container is in use)")

    async with own_database(database_url, "trainer_outage") as url:
        metrics_port = free_port()
        env = replica_env(
            url, state_dir, tmp_path, "replica-solo", free_port(), RAGTUNE_TRAINER_METRICS_PORT=str(metrics_port)
        )
        replicas = await start_replicas([env])
        channel, stub = replicas[0].stub()
        try:
            dataset = (await upload(stub, colour_lines(), "default")).dataset
            hyper = pb.Hyperparameters(n_epochs=number(2), batch_size=number(1), learning_rate_multiplier=number(10))
            job = (await stub.CreateJob(job_request("default", dataset.id, hyperparameters=hyper))).job
            assert job.total_steps == 12

            async def training() -> int:
                async for event in stub.WatchJob(pb.WatchJobRequest(id=job.id)):
                    if event.WhichOneof("event") == "progress":
                        return event.progress.step
                raise AssertionError("the job ended before training")

            step_before = await asyncio.wait_for(training(), 300)
            assert _gauge(metrics_port, "ragtune_trainer_running_jobs") == 1
            waiting = (await stub.CreateJob(job_request("default", dataset.id, hyperparameters=hyper))).job
            await asyncio.sleep(1)  # one replica, one job at a time: the second waits in the queue
            assert _gauge(metrics_port, "ragtune_trainer_queue_depth") == 1
            await stub.CancelJob(pb.CancelJobRequest(id=waiting.id))
            stop_embedded(pg_server, "fast")
            try:
                await asyncio.sleep(OUTAGE_S)
                assert replicas[0].process.poll() is None, "the trainer died with the database"
            finally:
                pg_server.ensure_postgres_running()
            done = await _final_job(stub, job.id, 900)
            await asyncio.sleep(1)  # the runner's next poll refreshes the queue depth
            assert _gauge(metrics_port, "ragtune_trainer_running_jobs") == 0
            assert _gauge(metrics_port, "ragtune_trainer_queue_depth") == 0
            events = [e async for e in stub.WatchJob(pb.WatchJobRequest(id=job.id))]
        finally:
            await channel.close()
            stop_all(replicas)

    assert done.status == pb.JOB_STATUS_SUCCEEDED, done.error
    assert done.resume_count == 0, "the training went on through the outage; it was not restarted"
    assert step_before < 12 and done.step == 12
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "events lost or out of order"
    statuses = [e.status.status for e in events if e.WhichOneof("event") == "status"]
    assert pb.JOB_STATUS_CANCELLED not in statuses and statuses[-1] == pb.JOB_STATUS_SUCCEEDED
    steps = [e.progress.step for e in events if e.WhichOneof("event") == "progress"]
    assert steps == list(range(1, 13)), "every step's progress was recorded, once"
