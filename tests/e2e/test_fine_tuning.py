"""One tiny fine-tuning job through the openai client, from upload to its ft: model answering in
chat completions, with tenant B kept out of every route on the way."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from tests.e2e.conftest import Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

COLOURS = [
    ("apple", "red"),
    ("sky", "blue"),
    ("grass", "green"),
    ("snow", "white"),
    ("coal", "black"),
    ("sun", "yellow"),
]
TRAINING = "".join(
    json.dumps(
        {
            "messages": [
                {"role": "user", "content": f"Colour of {thing}?"},
                {"role": "assistant", "content": f"COLOUR={colour.upper()}!"},
            ]
        }
    )
    + "\n"
    for thing, colour in COLOURS
)


async def _wait_final(tenant: Tenant, job_id: str, timeout_s: float = 420) -> FineTuningJob:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        job = await tenant.client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        assert asyncio.get_running_loop().time() < deadline, f"job still {job.status}"
        await asyncio.sleep(1)


async def test_fine_tuning_job_end_to_end(tenant_a: Tenant, tenant_b: Tenant, base_model: str) -> None:
    client = tenant_a.client
    training = await client.files.create(file=("colours.jsonl", TRAINING.encode()), purpose="fine-tune")
    assert training.purpose == "fine-tune" and training.id.startswith("file-")
    with pytest.raises(openai.NotFoundError):  # B cannot train on A's file
        await tenant_b.client.fine_tuning.jobs.create(model=base_model, training_file=training.id)

    job = await client.fine_tuning.jobs.create(
        model=base_model,
        training_file=training.id,
        suffix="colours",
        seed=7,
        hyperparameters={"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 10},
        extra_body={
            "lora": {"r": 8, "target_modules": ["q_proj", "v_proj"]},
            "max_seq_length": 128,
            "checkpoint_interval_steps": 3,  # 9 steps: checkpoints at 3, 6 and 9
        },
    )
    assert job.status in ("validating_files", "queued", "running") and job.training_file == training.id
    b = tenant_b.client
    for call in (
        lambda: b.fine_tuning.jobs.retrieve(job.id),
        lambda: b.fine_tuning.jobs.cancel(job.id),
        lambda: b.fine_tuning.jobs.list_events(job.id),
        lambda: b.fine_tuning.jobs.checkpoints.list(job.id),
    ):
        with pytest.raises(openai.NotFoundError):
            await call()
    assert job.id not in [j.id for j in (await b.fine_tuning.jobs.list()).data]

    done = await _wait_final(tenant_a, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model and done.fine_tuned_model.startswith("ft:")
    assert done.hyperparameters.n_epochs == 3 and done.trained_tokens
    assert job.id in [j.id for j in (await client.fine_tuning.jobs.list(limit=5)).data]
    events = (await client.fine_tuning.jobs.list_events(job.id, limit=200)).data
    assert any(e.type == "metrics" for e in events) and events[-1].message.startswith("Published")
    later = (await client.fine_tuning.jobs.list_events(job.id, after=events[0].id, limit=200)).data
    assert [e.id for e in later] == [e.id for e in events[1:]]
    saved = sorted(e.data["step"] for e in events if e.message.startswith("Checkpoint saved at step"))  # type: ignore[index]
    assert saved and set(saved) <= {3, 6, 9}, saved
    checkpoints = (await client.fine_tuning.jobs.checkpoints.list(job.id)).data
    steps = sorted(c.step_number for c in checkpoints)
    assert steps and set(steps) <= set(saved) and steps[-1] == saved[-1], (steps, saved)  # the newest are kept
    assert all(c.fine_tuning_job_id == job.id for c in checkpoints)
    assert all(
        c.fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-{c.step_number}" for c in checkpoints
    )
    # the official client's types parse the gateway's answers as they stand (validated, not only read)
    raw_job = (await tenant_a.http.get(f"/v1/fine_tuning/jobs/{job.id}")).json()
    parsed = FineTuningJob.model_validate(raw_job)
    assert parsed.status == "succeeded" and parsed.method and parsed.method.supervised
    assert parsed.method.supervised.hyperparameters and parsed.method.supervised.hyperparameters.n_epochs == 3
    assert (parsed.model_extra or {})["lora"]["r"] == 8 and raw_job["publish_state"] == "published"
    raw_events = (await tenant_a.http.get(f"/v1/fine_tuning/jobs/{job.id}/events", params={"limit": 200})).json()
    assert [FineTuningJobEvent.model_validate(e).id for e in raw_events["data"]] == [e.id for e in events]
    assert raw_events["last_id"] == events[-1].id and raw_events["has_more"] is False
    raw_checkpoints = (await tenant_a.http.get(f"/v1/fine_tuning/jobs/{job.id}/checkpoints")).json()
    parsed_checkpoints = [FineTuningJobCheckpoint.model_validate(c) for c in raw_checkpoints["data"]]
    assert [c.id for c in parsed_checkpoints] == [c.id for c in checkpoints] and raw_checkpoints["first_id"]
    assert all(c.metrics.step == c.step_number for c in parsed_checkpoints)
    with pytest.raises(openai.BadRequestError):  # a finished job cannot be cancelled
        await client.fine_tuning.jobs.cancel(job.id)
    again = await tenant_a.http.post(f"/v1/fine_tuning/jobs/{job.id}/publish")  # publishing again: a no-op
    assert again.status_code == 200 and again.json()["publish_state"] == "published", again.text
    assert (await tenant_b.http.post(f"/v1/fine_tuning/jobs/{job.id}/publish")).status_code == 404

    model = done.fine_tuned_model
    assert model in [m.id for m in (await client.models.list()).data]
    assert model not in [m.id for m in (await b.models.list()).data]
    answer = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Colour of apple?"}], max_tokens=12, temperature=0
    )
    assert answer.model == model and answer.choices[0].message.content
    with pytest.raises(openai.NotFoundError):  # B cannot use A's model
        await b.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4)


async def test_cancel_a_job(tenant_a: Tenant) -> None:
    training = await tenant_a.client.files.create(file=("c.jsonl", TRAINING.encode()), purpose="fine-tune")
    # the trainer's field violation (a google.rpc.BadRequest detail) names the request's parameter
    body = {"training_file": training.id, "hyperparameters": {"n_epochs": 51}}
    too_many = await tenant_a.http.post("/v1/fine_tuning/jobs", json=body)
    assert too_many.status_code == 400, too_many.text
    assert too_many.json()["error"]["param"] == "hyperparameters.n_epochs"
    job = await tenant_a.client.fine_tuning.jobs.create(
        model="", training_file=training.id, hyperparameters={"n_epochs": 50}, extra_body={"max_seq_length": 64}
    )
    cancelled = await tenant_a.client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    refused = await tenant_a.http.post(f"/v1/fine_tuning/jobs/{job.id}/publish")  # only a succeeded job
    assert refused.status_code == 400, refused.text


async def test_events_follow_as_server_sent_events(tenant_a: Tenant) -> None:
    """Follows a job while it trains: progress arrives as it happens (the job is still running when
    its first metrics event is read), then a cancel shows up on the same stream, which ends."""
    training = await tenant_a.client.files.create(file=("live.jsonl", TRAINING.encode()), purpose="fine-tune")
    job = await tenant_a.client.fine_tuning.jobs.create(
        model="", training_file=training.id, hyperparameters={"n_epochs": 50}, extra_body={"max_seq_length": 64}
    )
    events: list[dict] = []
    status_at_first_metrics: str | None = None
    done = False
    async with asyncio.timeout(900):
        url = f"/v1/fine_tuning/jobs/{job.id}/events"
        async with tenant_a.http.stream("GET", url, params={"stream": "true"}, timeout=None) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    break
                events.append(json.loads(line[6:]))
                if events[-1].get("type") == "metrics" and status_at_first_metrics is None:
                    status_at_first_metrics = (await tenant_a.client.fine_tuning.jobs.retrieve(job.id)).status
                    await tenant_a.client.fine_tuning.jobs.cancel(job.id)
    assert done, "the stream did not end with [DONE] after the job was cancelled"
    assert all(e["object"] == "fine_tuning.job.event" for e in events), events
    assert status_at_first_metrics == "running", "the first progress event was not read while the job ran"
    metrics = [e for e in events if e["type"] == "metrics"]
    assert metrics[0]["data"]["step"] >= 1 and metrics[0]["data"]["total_steps"] > metrics[0]["data"]["step"]
    assert events[-1]["data"].get("status") == "cancelled", events[-1]
    assert (await tenant_a.client.fine_tuning.jobs.retrieve(job.id)).status == "cancelled"
