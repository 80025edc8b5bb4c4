"""A tiny real fine-tune end to end: the loss falls, events stream in order, checkpoints are kept,
the adapter is complete and published to the generator under the fine-tuned model's name."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune.trainer.v1 import trainer_pb2 as pb
from tests.integration.trainer.helpers import (
    FINAL,
    collect_events,
    colour_lines,
    is_file,
    job_request,
    upload,
    wait_for,
)

STATUS_ORDER = [
    pb.JOB_STATUS_QUEUED,
    pb.JOB_STATUS_VALIDATING_FILES,
    pb.JOB_STATUS_RUNNING,
    pb.JOB_STATUS_SUCCEEDED,
]


async def test_tiny_job_trains_streams_events_in_order_and_publishes(
    trainer, tenant, generator_stub, trainer_settings, monkeypatch
):
    train = await upload(trainer, colour_lines(), tenant)
    validation = await upload(trainer, colour_lines()[:2], tenant)
    assert train.report.valid and validation.report.valid, (train.report, validation.report)
    request = job_request(
        tenant,
        train.dataset.id,
        validation_file=validation.dataset.id,
        suffix="colours",
        eval_interval_steps=3,
        checkpoint_interval_steps=2,
    )
    job = (await trainer.CreateJob(request)).job
    assert job.status == pb.JOB_STATUS_QUEUED
    assert job.hyperparameters.n_epochs.number == 2 and job.lora.r == 8 and job.total_steps == 6

    events = await collect_events(trainer, tenant, job.id, timeout_s=400)
    job = (await trainer.GetJob(pb.GetJobRequest(tenant=tenant, id=job.id))).job
    assert job.status == pb.JOB_STATUS_SUCCEEDED, job.error

    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "events out of order or missing"
    assert [e.status.status for e in events if e.WhichOneof("event") == "status"] == STATUS_ORDER
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds.index("started") < kinds.index("progress") < kinds.index("checkpoint") < kinds.index("publish")
    started = next(e.started for e in events if e.WhichOneof("event") == "started")
    assert started.train_examples == 6 and started.validation_examples == 2 and started.total_steps == 6
    assert 0.05 < started.trained_token_fraction < 0.5, "the mask should cover only the short answers"
    how = [e.message for e in events if e.WhichOneof("event") == "message" and e.message.startswith("training on")]
    assert len(how) == 1 and "packed rows of up to 512 tokens" in how[0], how

    progress = [e.progress for e in events if e.WhichOneof("event") == "progress"]
    assert [p.step for p in progress] == list(range(1, 7))
    assert progress[-1].train_loss < 0.5 * progress[0].train_loss, [p.train_loss for p in progress]
    assert all(p.tokens_per_second > 0 for p in progress) and progress[-1].eta_seconds == 0
    cpu = [p.cpu_seconds for p in progress]
    assert cpu[0] > 0 and cpu == sorted(cpu), cpu
    evals = [e.eval for e in events if e.WhichOneof("event") == "eval"]
    assert [e.step for e in evals] == [0, 3, 6]
    assert evals[-1].eval_loss < evals[0].eval_loss

    checkpoints = (await trainer.ListCheckpoints(pb.ListCheckpointsRequest(tenant=tenant, job_id=job.id))).checkpoints
    assert [c.step for c in checkpoints] == [4, 6], "older checkpoints are pruned (2 kept)"
    assert all(is_file(c.path, "trainer_state.json") for c in checkpoints)

    assert job.fine_tuned_model == f"ft:SmolLM2-135M-Instruct:colours:{job.id}"
    adapter = Path(job.adapter_path)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and set(config["target_modules"]) == {"q_proj", "v_proj"}
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not [p for p in adapter.parent.iterdir() if p.name.startswith(".adapter-")], "staging dir left behind"
    assert job.publish_state == pb.PUBLISH_STATE_PUBLISHED and job.trained_tokens > 0
    assert job.cpu_seconds >= cpu[-1], "the job's CPU time covers its whole training process"
    publish = next(e.publish for e in events if e.WhichOneof("event") == "publish")
    assert publish.published and publish.model == job.fine_tuned_model

    # The real generator serves it, without a restart, and the adapter changes the output.
    adapters = (await generator_stub.ListAdapters(gpb.ListAdaptersRequest(tenant=tenant))).adapters
    assert [a.name for a in adapters] == [job.fine_tuned_model] and adapters[0].rank == 8
    prompt = [gpb.ChatMessage(role="user", content="Colour of snow?")]
    sampling = gpb.SamplingParams(temperature=0, max_tokens=12)
    base = await generator_stub.GenerateUnary(gpb.GenerateRequest(messages=prompt, sampling=sampling))
    tuned = await generator_stub.GenerateUnary(
        gpb.GenerateRequest(messages=prompt, sampling=sampling, adapter=job.fine_tuned_model, tenant=tenant)
    )
    assert tuned.model == job.fine_tuned_model and tuned.text != base.text

    # Publishing again is a retry, recorded on the job: first with the generator unreachable.
    monkeypatch.setattr(trainer_settings, "generator_address", "127.0.0.1:1")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await trainer.PublishJob(pb.PublishJobRequest(tenant=tenant, id=job.id))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    failed = (await trainer.GetJob(pb.GetJobRequest(tenant=tenant, id=job.id))).job
    assert failed.publish_state == pb.PUBLISH_STATE_FAILED and "UNAVAILABLE" in failed.publish_error
    monkeypatch.undo()
    again = (await trainer.PublishJob(pb.PublishJobRequest(tenant=tenant, id=job.id))).job
    assert again.publish_state == pb.PUBLISH_STATE_PUBLISHED and again.publish_error == ""
    assert again.status == pb.JOB_STATUS_SUCCEEDED, "a publish retry does not change the job's outcome"
    adapters = (await generator_stub.ListAdapters(gpb.ListAdaptersRequest(tenant=tenant))).adapters
    assert [a.name for a in adapters] == [job.fine_tuned_model], "publishing again loads no second copy"


async def test_all_zero_mask_fails_with_a_clear_error(trainer, tenant):
    upload_reply = await upload(trainer, colour_lines(weight=0), tenant)
    assert upload_reply.report.valid and upload_reply.report.trainable_token_count == 0
    job = (await trainer.CreateJob(job_request(tenant, upload_reply.dataset.id))).job
    job = await wait_for(trainer, tenant, job.id, FINAL, timeout_s=300)
    assert job.status == pb.JOB_STATUS_FAILED
    assert job.error.code == "no_trainable_tokens" and job.error.param == "training_file"
    assert "weight 0" in job.error.message
    assert job.publish_state == pb.PUBLISH_STATE_PENDING and not job.fine_tuned_model
