"""Job lifecycle: one job trains at a time while others queue; cancel (queued: at once, running:
within seconds); bad requests answer with the field named; tenants see only their own jobs."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from ragtune.common.v1 import common_pb2
from ragtune.trainer.v1 import trainer_pb2 as pb
from tests.integration.trainer.helpers import FINAL, colour_lines, job_request, number, upload, wait_for


async def _first_event(trainer, tenant, job_id, kind, timeout_s):
    async def scan():
        async for event in trainer.WatchJob(pb.WatchJobRequest(tenant=tenant, id=job_id)):
            if event.WhichOneof("event") == kind:
                return event
        raise AssertionError(f"job {job_id} ended without a {kind} event")

    return await asyncio.wait_for(scan(), timeout_s)


async def test_one_job_at_a_time_and_cancel(trainer, tenant):
    dataset = (await upload(trainer, colour_lines() * 4, tenant)).dataset
    long_job = job_request(
        tenant, dataset.id, hyperparameters=pb.Hyperparameters(n_epochs=number(20), batch_size=number(1))
    )
    first = (await trainer.CreateJob(long_job)).job
    second = (await trainer.CreateJob(long_job)).job
    await _first_event(trainer, tenant, first.id, "progress", timeout_s=300)  # really training
    queued = (await trainer.GetJob(pb.GetJobRequest(tenant=tenant, id=second.id))).job
    assert queued.status == pb.JOB_STATUS_QUEUED, "a second job must wait while one trains"

    cancelled = (await trainer.CancelJob(pb.CancelJobRequest(tenant=tenant, id=second.id))).job
    assert cancelled.status == pb.JOB_STATUS_CANCELLED

    started = time.monotonic()
    cancelled = (await trainer.CancelJob(pb.CancelJobRequest(tenant=tenant, id=first.id))).job
    assert cancelled.status == pb.JOB_STATUS_CANCELLED and time.monotonic() - started < 10
    assert cancelled.finished_at.seconds > 0 and not cancelled.fine_tuned_model
    events = [e async for e in trainer.WatchJob(pb.WatchJobRequest(tenant=tenant, id=first.id))]
    assert events[-1].status.status == pb.JOB_STATUS_CANCELLED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await trainer.CancelJob(pb.CancelJobRequest(tenant=tenant, id=first.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # The stream resumes after a given seq, and listing pages newest first.
    tail = [e async for e in trainer.WatchJob(pb.WatchJobRequest(tenant=tenant, id=first.id, after_seq=2))]
    assert [e.seq for e in tail] == [e.seq for e in events if e.seq > 2]
    page = await trainer.ListJobs(pb.ListJobsRequest(tenant=tenant, page=common_pb2.PageRequest(page_size=1)))
    assert [j.id for j in page.jobs] == [second.id] and page.next_page_token
    rest = await trainer.ListJobs(
        pb.ListJobsRequest(tenant=tenant, page=common_pb2.PageRequest(page_token=page.next_page_token))
    )
    assert [j.id for j in rest.jobs] == [first.id] and not rest.next_page_token


async def test_bad_datasets_report_every_line(trainer, tenant):
    lines = [
        colour_lines()[0],  # 1 fine
        "{not json",  # 2
        '{"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]}',  # 3 missing role
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}',  # 4
        '{"messages": [{"role": "user", "content": "hi"}]}',  # 5 no assistant turn
        '{"messages": [{"role": "user", "content": "' + "word " * 600 + '"}, {"role": "assistant", "content": "x"}]}',
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "weight": 2}]}',
        '{"prompt": "a", "completion": "b"}',  # 8 other format
        "",  # blank lines are skipped
        "[1, 2]",  # 10
    ]
    reply = await upload(trainer, lines, tenant)
    assert not reply.report.valid and not reply.HasField("dataset")
    found = {(e.line, e.field): e.reason for e in reply.report.errors}
    assert found[(2, "")].startswith("not JSON")
    assert found[(3, "messages[0].role")] == "missing role"
    assert found[(4, "messages[1].content")] == "empty assistant turn"
    assert "assistant" in found[(5, "messages")]
    assert found[(6, "")].startswith("too long:") and "over the limit of 512" in found[(6, "")]
    assert (7, "messages[1].weight") in found
    assert "prompt_completion line in a chat dataset" in found[(8, "")]
    assert found[(10, "")] == "must be a JSON object"
    assert found[(0, "")] == "too few examples: 1 valid, at least 2 needed"
    assert len(found) == 9

    pc = await upload(
        trainer, ['{"prompt": "2+2=", "completion": "4"}'] * 3, tenant, pb.DATASET_FORMAT_PROMPT_COMPLETION
    )
    assert pc.report.valid and pc.dataset.format == pb.DATASET_FORMAT_PROMPT_COMPLETION
    assert pc.dataset.example_count == 3 and 0 < pc.report.trainable_token_count < pc.report.token_count

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await trainer.UploadDataset(iter([pb.UploadDatasetRequest(chunk=b"{}")]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "header" in err.value.details()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hyperparameters": pb.Hyperparameters(n_epochs=number(1.5))}, "hyperparameters.n_epochs"),
        ({"hyperparameters": pb.Hyperparameters(batch_size=number(0))}, "hyperparameters.batch_size"),
        ({"hyperparameters": pb.Hyperparameters(learning_rate_multiplier=number(-1))}, "learning_rate_multiplier"),
        ({"lora": pb.LoraConfig(r=128)}, "lora.r"),
        ({"lora": pb.LoraConfig(r=32)}, "lora.r"),  # over the generators' max_lora_rank (16)
        ({"lora": pb.LoraConfig(target_modules=["lm_head"])}, "lora.target_modules"),
        ({"lora": pb.LoraConfig(dropout=1.0)}, "lora.dropout"),
        ({"model": "no-such-model"}, "model"),
        ({"suffix": "bad suffix!"}, "suffix"),
        ({"max_seq_length": 8}, "max_seq_length"),
        ({"max_seq_length": 16}, "max_seq_length"),  # shorter than the dataset's examples
        ({"early_stopping_patience": 2}, "early_stopping_patience"),  # no validation set
        ({"validation_fraction": 0.9}, "validation_fraction"),
    ],
)
async def test_impossible_jobs_name_the_field(trainer, tenant, overrides, field):
    dataset = (await upload(trainer, colour_lines(), tenant)).dataset
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await trainer.CreateJob(job_request(tenant, dataset.id, **overrides))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details()


async def test_unknown_things_are_not_found_and_tenants_are_apart(trainer, tenant, new_tenant):
    dataset = (await upload(trainer, colour_lines(), tenant)).dataset
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await trainer.CreateJob(job_request(tenant, "file-missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "training_file" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await trainer.CreateJob(job_request(new_tenant(), dataset.id))  # another tenant's dataset
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await trainer.GetJob(pb.GetJobRequest(tenant=tenant, id="ftjob-missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    job = (await trainer.CreateJob(job_request(tenant, dataset.id))).job
    await trainer.CancelJob(pb.CancelJobRequest(tenant=tenant, id=job.id))
    for call in (trainer.GetJob(pb.GetJobRequest(tenant=new_tenant(), id=job.id)),):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await trainer.PublishJob(pb.PublishJobRequest(tenant=tenant, id=job.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    job = await wait_for(trainer, tenant, job.id, FINAL, timeout_s=30)
    assert job.status == pb.JOB_STATUS_CANCELLED
