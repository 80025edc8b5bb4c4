"""Creating fine-tuning jobs under the per-tenant cap, over real PostgreSQL and a real gRPC trainer
stand-in (a small TrainerService that keeps its jobs in memory and can be told to answer CreateJob
slowly): a slow trainer pins no database connection or lock while the call is in flight, the cap
holds when many creations race on two gateway replicas, and a place left by a gateway that died
mid-call stops counting once it expires."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest_asyncio

from ragtune.trainer.v1 import trainer_pb2 as tpb
from ragtune.trainer.v1 import trainer_pb2_grpc
from ragtune_common.server import GrpcServer, build_server
from ragtune_common.settings import ServiceSettings
from ragtune_gateway.downstream.trainer import SERVICE as TRAINER
from tests.fixtures.security import SERVICE_TOKEN_SECRET
from tests.integration.gateway.conftest import GatewayFactory

TRAINING = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


class MemoryTrainer(trainer_pb2_grpc.TrainerServiceServicer):
    """Datasets and queued jobs in memory; CreateJob waits for ``gate`` (open unless closed) and
    counts the calls in flight."""

    def __init__(self) -> None:
        self.jobs: dict[str, list[tpb.Job]] = {}
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0

    async def UploadDataset(self, request_iterator: Any, context: Any) -> tpb.UploadDatasetResponse:
        header, size = None, 0
        async for part in request_iterator:
            header = header or part.header
            size += len(part.chunk)
        assert header is not None
        dataset = tpb.Dataset(id=f"file-{uuid.uuid4().hex[:12]}", tenant=header.tenant, filename=header.filename)
        dataset.byte_count, dataset.example_count = size, 1
        return tpb.UploadDatasetResponse(dataset=dataset, report=tpb.ValidationReport(valid=True, example_count=1))

    async def CreateJob(self, request: tpb.CreateJobRequest, context: Any) -> tpb.CreateJobResponse:
        self.in_flight += 1
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        job = tpb.Job(
            id=f"ftjob-{uuid.uuid4().hex[:12]}",
            tenant=request.tenant,
            model=request.model,
            training_file=request.training_file,
            status=tpb.JOB_STATUS_QUEUED,
        )
        self.jobs.setdefault(request.tenant, []).append(job)
        return tpb.CreateJobResponse(job=job)

    async def ListJobs(self, request: tpb.ListJobsRequest, context: Any) -> tpb.ListJobsResponse:
        return tpb.ListJobsResponse(jobs=self.jobs.get(request.tenant, []))


@contextlib.asynccontextmanager
async def serve_trainer(servicer: MemoryTrainer) -> AsyncIterator[GrpcServer]:
    settings = ServiceSettings(port=0, service_token=SERVICE_TOKEN_SECRET, drain_notice_s=0)
    bound = await build_server(
        settings, lambda server: trainer_pb2_grpc.add_TrainerServiceServicer_to_server(servicer, server), [TRAINER]
    )
    await bound.server.start()
    await bound.set_serving()
    try:
        yield bound
    finally:
        await bound.stop(0)


@pytest_asyncio.fixture(loop_scope="session")
async def trainer() -> AsyncIterator[tuple[MemoryTrainer, str]]:
    servicer = MemoryTrainer()
    async with serve_trainer(servicer) as bound:
        yield servicer, f"127.0.0.1:{bound.port}"


async def _training_file(http: httpx.AsyncClient) -> str:
    uploaded = await http.post("/v1/files", files={"file": ("t.jsonl", TRAINING)}, data={"purpose": "fine-tune"})
    assert uploaded.status_code == 200, uploaded.text
    return str(uploaded.json()["id"])


async def _until(condition: Any, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


async def _held_in_the_database(database_url: str) -> tuple[int, int]:
    """(sessions idle in a transaction, advisory locks held) in the gateway's database."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            "        AND state LIKE 'idle in transaction%'),"
            "       (SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            "        WHERE l.locktype = 'advisory' AND d.datname = current_database())"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_a_slow_trainer_pins_no_connection(
    start_gateway: GatewayFactory, trainer: tuple[MemoryTrainer, str], gateway_database_url: str
) -> None:
    servicer, address = trainer
    pool_size = 2
    gateway = await start_gateway(trainer_address=address, db_pool_min=1, db_pool_max=pool_size, db_connect_timeout_s=2)
    _, _, key = await gateway.new_tenant()
    async with gateway.client(key, timeout=30) as http:
        body = {"model": "m", "training_file": await _training_file(http)}
        servicer.gate.clear()
        creations = [asyncio.create_task(http.post("/v1/fine_tuning/jobs", json=body)) for _ in range(pool_size + 2)]
        try:
            await _until(lambda: servicer.in_flight == len(creations), "every CreateJob reached the trainer")
            assert await _held_in_the_database(gateway_database_url) == (0, 0)
            for _ in range(3):  # the pool serves other requests meanwhile, at once
                listed = await asyncio.wait_for(http.get("/v1/files"), 1.5)
                assert listed.status_code == 200, listed.text
        finally:
            servicer.gate.set()
        answers = await asyncio.gather(*creations)
    assert [a.status_code for a in answers] == [200] * len(creations), [a.text for a in answers]
    async with await psycopg.AsyncConnection.connect(gateway_database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM gateway.cap_reservations WHERE kind = 'fine-tuning-jobs'")
        assert (await cur.fetchone()) == (0,), "every place was given back"


async def test_the_cap_holds_when_creations_race_on_two_replicas(
    start_gateway: GatewayFactory, trainer: tuple[MemoryTrainer, str]
) -> None:
    servicer, address = trainer
    cap = 2
    replicas = [await start_gateway(trainer_address=address, max_active_jobs_per_tenant=cap) for _ in range(2)]
    tenant, _, key = await replicas[0].new_tenant()
    async with replicas[0].client(key) as a, replicas[1].client(key) as b:
        body = {"model": "m", "training_file": await _training_file(a)}
        servicer.gate.clear()  # every creation is in flight before the first is answered
        creations = [asyncio.create_task((a, b)[i % 2].post("/v1/fine_tuning/jobs", json=body)) for i in range(8)]
        await asyncio.sleep(1.0)
        servicer.gate.set()
        answers = await asyncio.gather(*creations)
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * cap + [429] * (8 - cap), [r.text for r in answers]
    assert len(servicer.jobs[tenant]) == cap
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["error"]["code"] == "limit_reached" and "Retry-After" in refused.headers


async def test_a_place_left_by_a_dead_gateway_expires(
    start_gateway: GatewayFactory, trainer: tuple[MemoryTrainer, str], gateway_database_url: str
) -> None:
    _, address = trainer
    gateway = await start_gateway(trainer_address=address, max_active_jobs_per_tenant=1)
    tenant, _, key = await gateway.new_tenant()
    async with await psycopg.AsyncConnection.connect(gateway_database_url, autocommit=True) as conn:
        await conn.execute(  # as a gateway leaves it that was killed during its CreateJob call
            "INSERT INTO gateway.cap_reservations (tenant_id, kind, expires_at)"
            " VALUES (%s, 'fine-tuning-jobs', now() + interval '2 seconds')",
            (tenant,),
        )
    async with gateway.client(key) as http:
        body = {"model": "m", "training_file": await _training_file(http)}
        refused = await http.post("/v1/fine_tuning/jobs", json=body)
        assert refused.status_code == 429, refused.text
        await asyncio.sleep(2.5)
        created = await http.post("/v1/fine_tuning/jobs", json=body)
        assert created.status_code == 200, created.text
