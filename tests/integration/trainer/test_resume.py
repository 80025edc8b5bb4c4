"""A trainer killed mid-job (SIGKILL, no chance to clean up) takes its training process down with
it, and the next trainer to start resumes the job from its last checkpoint.

The trainer under test runs as a real process on a database of its own, so the session's trainer
does not pick the job up."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest_asyncio
from grpc_health.v1 import health_pb2
from psycopg.conninfo import make_conninfo

from ragtune.trainer.v1 import trainer_pb2 as pb
from ragtune.trainer.v1 import trainer_pb2_grpc
from ragtune_common.channels import health_status
from ragtune_trainer.main import SERVICE_NAME, create_server
from ragtune_trainer.runtime import TrainerRuntime
from tests.fixtures.security import SERVICE_TOKEN, direct_channel
from tests.integration.trainer.helpers import collect_events, colour_lines, is_file, job_request, upload, wait_for


@pytest_asyncio.fixture
async def own_database(database_url: str) -> AsyncIterator[str]:
    name = f"trainer_resume_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(database_url, dbname=name)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_trainer(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ragtune_trainer.main"], env=env)


def _processes_running(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


async def test_killed_trainer_resumes_job_from_last_checkpoint(trainer_settings, own_database, state_dir):
    settings = trainer_settings.model_copy(
        update={"database_url": own_database, "artifacts_dir": state_dir / f"resume-{uuid.uuid4().hex[:6]}"}
    )
    port = _free_port()
    env = dict(
        os.environ,
        DATABASE_URL=own_database,
        RAGTUNE_STATE_DIR=str(state_dir),
        RAGTUNE_TRAINER_PORT=str(port),
        RAGTUNE_SERVICE_TOKEN=SERVICE_TOKEN,
        RAGTUNE_TRAINER_ARTIFACTS_DIR=str(settings.artifacts),
        RAGTUNE_TRAINER_MIN_EXAMPLES="2",
        RAGTUNE_TRAINER_PROGRESS_INTERVAL_S="0",
        RAGTUNE_TRAINER_POLL_INTERVAL_S="0.3",
        RAGTUNE_TRAINER_GENERATOR_ADDRESS=settings.generator_address,
        # how the job trains is recorded with it: the resuming replica (default settings) trains the same way
        RAGTUNE_TRAINER_ROW_TOKENS="64",
        RAGTUNE_TRAINER_PRECISION="fp32",
    )
    first = _start_trainer(env)
    try:
        for _ in range(240):
            if health_status(f"127.0.0.1:{port}") == health_pb2.HealthCheckResponse.SERVING:
                break
            assert first.poll() is None, "the trainer exited during start-up"
            await asyncio.sleep(0.5)
        async with direct_channel(port, SERVICE_NAME) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            dataset = (await upload(stub, colour_lines(), "default")).dataset
            job = (await stub.CreateJob(job_request("default", dataset.id, checkpoint_interval_steps=2))).job
            assert job.total_steps == 6

            async def first_checkpoint() -> pb.JobEvent:
                async for event in stub.WatchJob(pb.WatchJobRequest(id=job.id)):
                    if event.WhichOneof("event") == "checkpoint":
                        return event
                raise AssertionError("no checkpoint")

            checkpoint = await asyncio.wait_for(first_checkpoint(), 300)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    spec = f"jobs/{job.id}/spec.json"
    for _ in range(50):  # the training process dies with its trainer (parent-death signal)
        if not _processes_running(spec):
            break
        await asyncio.sleep(0.1)
    assert not _processes_running(spec), "training process outlived its trainer"

    runtime = TrainerRuntime(settings)
    bound = await create_server(settings, runtime)
    await bound.server.start()
    await runtime.start()  # resumes the job left running
    try:
        async with direct_channel(bound.port, bound.service_names[0]) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            events = await collect_events(stub, "default", job.id, timeout_s=300)
            done = await wait_for(stub, "default", job.id, [pb.JOB_STATUS_SUCCEEDED], timeout_s=10)
    finally:
        await bound.stop(1)
        await runtime.close()
    # The kill may land after later checkpoints than the first one this test saw: the resume must
    # start from the LAST checkpoint the killed trainer recorded, whichever that was.
    runs = [e for e in events if e.WhichOneof("event") == "started"]
    assert len(runs) == 2, "one killed run and one resumed run"
    recorded = [e for e in events if e.WhichOneof("event") == "checkpoint" and e.seq < runs[-1].seq]
    assert recorded and recorded[0].seq == checkpoint.seq, "the first checkpoint seen is in the job's log"
    step = recorded[-1].checkpoint.step
    assert step in (2, 4), step
    resumed = [e for e in events if e.seq > recorded[-1].seq]
    notes = [e.message for e in resumed if e.WhichOneof("event") == "message"]
    assert any(f"resuming from checkpoint at step {step}" in n for n in notes), notes
    started = [e.started for e in resumed if e.WhichOneof("event") == "started"]
    assert started and started[-1].resumed_from_step == step
    after_resume = [e for e in resumed if e.seq > next(r.seq for r in resumed if r.WhichOneof("event") == "started")]
    steps = [e.progress.step for e in after_resume if e.WhichOneof("event") == "progress"]
    assert steps == list(range(step + 1, 7)), "the resumed run must continue after the checkpoint"
    how = [n for n in notes if n.startswith("training on")]
    assert how and "packed rows of up to 64 tokens, float32," in how[-1], notes
    assert done.resume_count == 1 and done.step == 6 and is_file(done.adapter_path, "adapter_config.json")
    progress = [e.progress for e in events if e.WhichOneof("event") == "progress"]
    before = [p.cpu_seconds for p in progress if p.step <= step]
    assert before and done.cpu_seconds > before[-1], "CPU time adds up over the runs of a resumed job"
