"""Creating fine-tuning jobs under the per-tenant cap, over real PostgreSQL and a real gRPC trainer
stand-in (a small TrainerService that keeps its jobs in memory and can be told to answer CreateJob
slowly): a slow trainer pins no database connection or lock while the call is in flight, the cap
holds when many creations race on two gateway replicas, and a place left by a gateway that died
mid-call stops counting once it expires."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import psycopg
import pytest_asyncio

from ragtune.trainer.v1 import trainer_pb2 as tpb
from ragtune.trainer.v1 import trainer_pb2_grpc
from ragtune_gateway.downstream.trainer import SERVICE as TRAINER
from tests.integration.gateway.caps_in_flight import Gate, assert_nothing_pinned_while_held, race, serve_stand_in
from tests.integration.gateway.conftest import GatewayFactory

TRAINING = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


class MemoryTrainer(trainer_pb2_grpc.TrainerServiceServicer):
    """Datasets and queued jobs in memory; CreateJob passes ``gate`` first."""

    def __init__(self) -> None:
        self.jobs: dict[str, list[tpb.Job]] = {}
        self.gate = Gate()

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
        await self.gate.passage()
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


@pytest_asyncio.fixture(loop_scope="session")
async def trainer() -> AsyncIterator[tuple[MemoryTrainer, str]]:
    servicer = MemoryTrainer()
    register = partial(trainer_pb2_grpc.add_TrainerServiceServicer_to_server, servicer)
    async with serve_stand_in(register, TRAINER) as address:
        yield servicer, address


async def _training_file(http: httpx.AsyncClient) -> str:
    uploaded = await http.post("/v1/files", files={"file": ("t.jsonl", TRAINING)}, data={"purpose": "fine-tune"})
    assert uploaded.status_code == 200, uploaded.text
    return str(uploaded.json()["id"])


async def test_a_slow_trainer_pins_no_connection(
    start_gateway: GatewayFactory, trainer: tuple[MemoryTrainer, str], gateway_database_url: str
) -> None:
    servicer, address = trainer
    pool_size = 2
    gateway = await start_gateway(trainer_address=address, db_pool_min=1, db_pool_max=pool_size, db_connect_timeout_s=2)
    _, _, key = await gateway.new_tenant()
    async with gateway.client(key, timeout=30) as http:
        body = {"model": "m", "training_file": await _training_file(http)}
        create = partial(http.post, "/v1/fine_tuning/jobs", json=body)
        await assert_nothing_pinned_while_held(
            http, servicer.gate, create, pool_size + 2, gateway_database_url, "fine-tuning-jobs"
        )


async def test_the_cap_holds_when_creations_race_on_two_replicas(
    start_gateway: GatewayFactory, trainer: tuple[MemoryTrainer, str]
) -> None:
    servicer, address = trainer
    cap = 2
    replicas = [await start_gateway(trainer_address=address, max_active_jobs_per_tenant=cap) for _ in range(2)]
    tenant, _, key = await replicas[0].new_tenant()
    async with replicas[0].client(key) as a, replicas[1].client(key) as b:
        body = {"model": "m", "training_file": await _training_file(a)}
        answers = await race(servicer.gate, [partial(c.post, "/v1/fine_tuning/jobs", json=body) for c in [a, b] * 4])
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
