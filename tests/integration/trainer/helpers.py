"""Builders shared by the trainer integration tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ragtune.trainer.v1 import trainer_pb2 as pb
from ragtune.trainer.v1 import trainer_pb2_grpc

FINAL = (pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED)

# A tiny, strongly patterned task the model picks up in a few steps.
COLOURS = [
    ("apple", "red"),
    ("sky", "blue"),
    ("grass", "green"),
    ("snow", "white"),
    ("coal", "black"),
    ("sun", "yellow"),
]


def chat_line(question: str, answer: str, weight: int | None = None) -> str:
    assistant: dict[str, Any] = {"role": "assistant", "content": answer}
    if weight is not None:
        assistant["weight"] = weight
    return json.dumps({"messages": [{"role": "user", "content": question}, assistant]})


def colour_lines(weight: int | None = None) -> list[str]:
    return [chat_line(f"Colour of {thing}?", f"COLOUR={colour.upper()}!", weight) for thing, colour in COLOURS]


async def upload(
    stub: trainer_pb2_grpc.TrainerServiceStub,
    lines: Iterable[str],
    tenant: str,
    fmt: Any = pb.DATASET_FORMAT_UNSPECIFIED,
    chunk: int = 97,
) -> pb.UploadDatasetResponse:
    data = ("\n".join(lines) + "\n").encode()

    async def requests():
        yield pb.UploadDatasetRequest(header=pb.DatasetHeader(tenant=tenant, filename="data.jsonl", format=fmt))
        for start in range(0, len(data), chunk):  # split anywhere, even inside a line
            yield pb.UploadDatasetRequest(chunk=data[start : start + chunk])

    return await stub.UploadDataset(requests())


def read_text(*parts: str | Path) -> str:
    return Path(*parts).read_text()


def is_file(*parts: str | Path) -> bool:
    return Path(*parts).is_file()


def number(value: float) -> pb.NumberOrAuto:
    return pb.NumberOrAuto(number=value)


def job_request(tenant: str, training_file: str, **overrides: Any) -> pb.CreateJobRequest:
    fields: dict[str, Any] = {
        "tenant": tenant,
        "training_file": training_file,
        "hyperparameters": pb.Hyperparameters(
            n_epochs=number(2), batch_size=number(2), learning_rate_multiplier=number(10)
        ),
        "lora": pb.LoraConfig(r=8, target_modules=["q_proj", "v_proj"]),
        "seed": 7,
        "max_seq_length": 128,
    }
    fields.update(overrides)
    return pb.CreateJobRequest(**fields)


async def wait_for(
    stub: trainer_pb2_grpc.TrainerServiceStub, tenant: str, job_id: str, statuses: Iterable[int], timeout_s: float
) -> pb.Job:
    wanted = set(statuses)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        job = (await stub.GetJob(pb.GetJobRequest(tenant=tenant, id=job_id))).job
        if job.status in wanted:
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} still {pb.JobStatus.Name(job.status)} after {timeout_s}s: {job}")
        await asyncio.sleep(0.3)


async def collect_events(
    stub: trainer_pb2_grpc.TrainerServiceStub, tenant: str, job_id: str, timeout_s: float
) -> list[pb.JobEvent]:
    async def drain() -> list[pb.JobEvent]:
        return [e async for e in stub.WatchJob(pb.WatchJobRequest(tenant=tenant, id=job_id))]

    return await asyncio.wait_for(drain(), timeout_s)
