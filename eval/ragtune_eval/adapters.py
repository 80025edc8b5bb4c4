"""An evaluation's LoRA adapters, trained through the gateway's fine-tuning API and kept in the
run's state under a key (the arm, or the arm at a learning-curve size): a resumed run waits for
the job it started instead of starting another, and retrains only after a failed or cancelled job."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ragtune_common.statuses import FINAL
from ragtune_eval.client import EvalApiError, GatewayClient
from ragtune_eval.indexing import Progress
from ragtune_eval.rundir import RunStore

JOB_POLL_S = 2.0


def job_suffix(key: str) -> str:
    """``eval-<key>`` in the characters a job suffix and a file name may hold (``rag+ft`` -> ``rag-ft``)."""
    return "eval-" + re.sub(r"[^A-Za-z0-9-]", "-", key)


def training_job(
    seed: int, epochs: int, batch_size: int, learning_rate_multiplier: float, max_seq_length: int, lora_rank: int
) -> dict[str, Any]:
    """The fine-tuning job an evaluation arm trains with (0 = the trainer's default for the multiplier
    and the rank; no validation split: the arm is scored on held-out items)."""
    hyperparameters: dict[str, Any] = {"n_epochs": epochs, "batch_size": batch_size}
    if learning_rate_multiplier:
        hyperparameters["learning_rate_multiplier"] = learning_rate_multiplier
    job: dict[str, Any] = {
        "seed": seed,
        "hyperparameters": hyperparameters,
        "validation_fraction": 0,
        "max_seq_length": max_seq_length,
    }
    if lora_rank:
        job["lora"] = {"r": lora_rank}
    return job


async def upload_lines(client: GatewayClient, key: str, lines: list[str]) -> str:
    """The training examples as a JSONL file (purpose fine-tune); its id."""
    data = ("\n".join(lines) + "\n").encode("utf-8")
    return await client.upload(f"{job_suffix(key)}.jsonl", data, "fine-tune")


async def ensure_adapter(
    client: GatewayClient,
    run: RunStore,
    key: str,
    training_file: Callable[[], Awaitable[tuple[str, int]]],
    job: dict[str, Any],
    progress: Progress,
) -> str:
    """The fine-tuned model kept under ``key``, training it when there is none: ``training_file()``
    builds and uploads the examples, (file id, examples); ``job`` holds the request's other fields
    (hyperparameters, seed, max_seq_length, lora...). Raises :class:`EvalApiError` when it fails."""
    jobs = run.state.setdefault("jobs", {})
    entry = jobs.get(key)
    if entry is None or entry.get("status") in ("failed", "cancelled"):
        start = time.perf_counter()
        file_id, examples = await training_file()
        build_s = time.perf_counter() - start
        body = {"model": run.state["base_model"], "training_file": file_id, "suffix": job_suffix(key), **job}
        created = await client.create_job(body)
        entry = {"job_id": created["id"], "examples": examples, "data_build_s": build_s, "status": created["status"]}
        jobs[key] = entry
        await run.save_state()
    if entry.get("status") != "succeeded":
        done = await wait_job(client, key, entry["job_id"], progress)
        running_at = await running_since(client, done)
        entry.update(
            status=done["status"],
            model=done["fine_tuned_model"],
            queued_s=running_at - done["created_at"],
            train_wall_s=(done["finished_at"] or running_at) - running_at,
            trained_tokens=done["trained_tokens"],
            train_loss=done.get("train_loss"),
            steps=done.get("total_steps"),
            train_cpu_s=done.get("cpu_seconds"),
        )
        await run.save_state()
        if done["status"] != "succeeded" or done.get("publish_state") != "published":
            raise EvalApiError(f"fine-tuning job {done['id']} for {key}: {done['status']}: {done.get('error')}")
    return str(entry["model"])


async def running_since(client: GatewayClient, job: dict[str, Any]) -> int:
    """When the job left the queue (its first ``running`` event): the wall-clock of training
    excludes waiting behind other tenants' jobs. The job's creation time if no event says."""
    for event in await client.job_events(job["id"]):
        if (event.get("data") or {}).get("status") == "running":
            return int(event["created_at"])
    return int(job["created_at"])


async def wait_job(client: GatewayClient, key: str, job_id: str, progress: Progress) -> dict[str, Any]:
    progress.start(f"train-{key}", f"training {key} ({job_id})", None)
    while True:
        job = await client.get_job(job_id)
        loss = f"loss {job['train_loss']:.3f}" if job.get("train_loss") else job["status"]
        progress.update(f"train-{key}", job.get("step") or 0, job.get("total_steps") or None, loss)
        if job["status"] in FINAL:
            return job
        await asyncio.sleep(JOB_POLL_S)
