"""A job that succeeded while no generator answered ends ``succeeded`` with its publication
``failed`` (never stuck ``pending``, which REST shows as ``running``); the next trainer to start
publishes it to the real generator, which then serves it."""

from __future__ import annotations

import asyncio

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune.trainer.v1 import trainer_pb2 as pb
from ragtune.trainer.v1 import trainer_pb2_grpc
from tests.fixtures.security import direct_channel
from tests.fixtures.trainer import serve_trainer
from tests.integration.trainer.helpers import FINAL, colour_lines, job_request, upload, wait_for
from tests.integration.trainer.replicas import own_database


async def test_failed_publication_is_published_at_the_next_start(
    trainer_settings, generator_stub, database_url, tmp_path, tenant
):
    async with own_database(database_url, "trainer_republish") as url:
        offline = trainer_settings.model_copy(
            update={
                "database_url": url,
                "artifacts_dir": tmp_path / "artifacts",
                "generator_address": "127.0.0.1:1",
                "publish_timeout_s": 3.0,
            }
        )
        async with (
            serve_trainer(offline) as bound,
            direct_channel(bound.port, bound.service_names[0]) as channel,
        ):
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            dataset = (await upload(stub, colour_lines(), tenant)).dataset
            job = (await stub.CreateJob(job_request(tenant, dataset.id))).job
            job = await wait_for(stub, tenant, job.id, FINAL, timeout_s=400)
        assert job.status == pb.JOB_STATUS_SUCCEEDED, job.error
        assert job.publish_state == pb.PUBLISH_STATE_FAILED and job.publish_error

        online = offline.model_copy(update={"generator_address": trainer_settings.generator_address})
        async with (
            serve_trainer(online) as bound,
            direct_channel(bound.port, bound.service_names[0]) as channel,
        ):
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            for _ in range(120):
                published = (await stub.GetJob(pb.GetJobRequest(tenant=tenant, id=job.id))).job
                if published.publish_state != pb.PUBLISH_STATE_FAILED:
                    break
                await asyncio.sleep(0.5)
            events = [e async for e in stub.WatchJob(pb.WatchJobRequest(tenant=tenant, id=job.id))]
    assert published.publish_state == pb.PUBLISH_STATE_PUBLISHED and published.publish_error == ""
    publications = [e.publish for e in events if e.WhichOneof("event") == "publish"]
    assert [p.published for p in publications] == [False, True]
    adapters = (await generator_stub.ListAdapters(gpb.ListAdaptersRequest(tenant=tenant))).adapters
    assert job.fine_tuned_model in [a.name for a in adapters]
