"""Shared pieces of the trainer benchmarks: GSM8K, SQuAD and BANKING77 as chat examples, the trainer
(and optionally the generator) started as separate processes over the bench database, and a job
driven the way a client drives one (UploadDataset stream, CreateJob, WatchJob) with its event timeline.

Event times are the ``JobEvent.created_at`` the trainer stores (PostgreSQL ``now()`` of the
transaction that recorded the event, on this machine's clock), so they compare with ``time.time()``.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from bench.common import Context, service_process
from ragtune.common.v1 import common_pb2 as pb_common
from ragtune.trainer.v1 import trainer_pb2 as pb
from ragtune.trainer.v1 import trainer_pb2_grpc
from ragtune_common.models import resolve_base_model
from ragtune_trainer.datasets import Example, Message
from ragtune_trainer.masks import TokenizedExample, tokenize_example

TENANT = "benchtrainer"
RPC_TIMEOUT_S = 3600.0
_CALC = re.compile(r"<<[^<>]*>>")


@dataclass(frozen=True)
class Problem:
    """One GSM8K item: the question, the worked solution (calculator notes removed), the answer."""

    question: str
    solution: str
    answer: str


def final_answer(solution: str) -> str:
    return solution.rsplit("####", 1)[1].strip()


def load_gsm8k(datasets: Path, split: str) -> list[Problem]:
    problems = []
    with (datasets / "gsm8k" / f"{split}.jsonl").open(encoding="utf-8") as f:
        for row in map(json.loads, f):
            solution = _CALC.sub("", row["answer"]).strip()
            problems.append(Problem(row["question"].strip(), solution, final_answer(solution)))
    return problems


def shuffled(items: Sequence[Problem], seed: int) -> list[Problem]:
    order = list(items)
    random.Random(seed).shuffle(order)
    return order


def as_example(problem: Problem, line: int = 1) -> Example:
    """user = question, assistant = worked solution ending ``#### N`` (as the trainer stores it)."""
    return Example(line, (Message("user", problem.question, 0), Message("assistant", problem.solution, 1)))


def chat_line(problem: Problem) -> str:
    messages = [{"role": "user", "content": problem.question}, {"role": "assistant", "content": problem.solution}]
    return json.dumps({"messages": messages}, ensure_ascii=False)


def pick_fitting(
    tokenizer: Any, problems: Sequence[Problem], count: int, max_tokens: int
) -> list[tuple[Problem, TokenizedExample]]:
    """The first ``count`` problems whose chat rendering fits ``max_tokens`` (in the given order)."""
    picked = []
    for problem in problems:
        tokenized = tokenize_example(tokenizer, as_example(problem))
        if len(tokenized.input_ids) <= max_tokens:
            picked.append((problem, tokenized))
            if len(picked) == count:
                return picked
    raise ValueError(f"only {len(picked)} problems fit {max_tokens} tokens, {count} wanted")


@dataclass(frozen=True)
class ChatPair:
    """One user message and the assistant's answer: the shape of the throughput benchmark's data."""

    user: str
    assistant: str

    def example(self, line: int = 1) -> Example:
        return Example(line, (Message("user", self.user, 0), Message("assistant", self.assistant, 1)))

    def line(self) -> str:
        messages = [{"role": "user", "content": self.user}, {"role": "assistant", "content": self.assistant}]
        return json.dumps({"messages": messages}, ensure_ascii=False)


def load_squad_pairs(path: Path) -> list[ChatPair]:
    """SQuAD v1.1 as closed-book-with-context QA: the paragraph and the question, the first gold answer
    (long, varied prompts; answers of a few tokens)."""
    pairs = []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                user = f"{paragraph['context']}\n\nQuestion: {qa['question']}"
                pairs.append(ChatPair(user, qa["answers"][0]["text"]))
    return pairs


def load_banking77_pairs(path: Path) -> list[ChatPair]:
    """BANKING77 as intent classification: the customer's message, its intent label (short examples)."""
    with path.open(encoding="utf-8", newline="") as f:
        return [ChatPair(row["text"], row["category"]) for row in csv.DictReader(f)]


def pick_pairs(
    tokenizer: Any, pairs: Sequence[ChatPair], count: int, max_tokens: int, seed: int
) -> list[tuple[ChatPair, TokenizedExample]]:
    """``count`` pairs in a seeded shuffle whose chat rendering fits ``max_tokens``, tokenized."""
    order = list(pairs)
    random.Random(seed).shuffle(order)
    picked = []
    for pair in order:
        tokenized = tokenize_example(tokenizer, pair.example())
        if len(tokenized.input_ids) <= max_tokens:
            picked.append((pair, tokenized))
            if len(picked) == count:
                return picked
    raise ValueError(f"only {len(picked)} examples fit {max_tokens} tokens, {count} wanted")


def base_model_dir(ctx: Context) -> Path:
    return resolve_base_model("SmolLM2-135M-Instruct", ctx.state_dir)


def load_tokenizer(ctx: Context) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_model_dir(ctx)))


# -- services -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Addresses:
    trainer: str
    generator: str | None


@contextmanager
def services(
    ctx: Context, label: str, with_generator: bool, trainer_env: dict[str, str] | None = None
) -> Iterator[Addresses]:
    """The generator (if asked, RAM share 0.25) then the trainer publishing to it; without a
    generator the trainer publishes to a closed port (publishing fails fast, the job still succeeds)."""
    from ragtune_generator.main import SERVICE_NAME as GENERATOR
    from ragtune_trainer.main import SERVICE_NAME as TRAINER

    logs = ctx.state_dir / "logs"
    base = {**os.environ, "RAGTUNE_STATE_DIR": str(ctx.state_dir)}
    with ExitStack() as stack:
        generator = None
        if with_generator:
            env = {**base, "RAGTUNE_GENERATOR_KV_CACHE_GIB": "1", "DATABASE_URL": ctx.database_url}
            log = logs / f"generator-{label}.log"
            generator = stack.enter_context(
                service_process("ragtune_generator.main", GENERATOR, "RAGTUNE_GENERATOR_PORT", env, log)
            )
        env = {
            **base,
            "DATABASE_URL": ctx.database_url,
            "RAGTUNE_TRAINER_GENERATOR_ADDRESS": generator or "127.0.0.1:1",
            "RAGTUNE_TRAINER_MIN_EXAMPLES": "1",  # the benchmarks pick their slices' sizes
            **(trainer_env or {}),
        }
        log = logs / f"trainer-{label}.log"
        trainer = stack.enter_context(
            service_process("ragtune_trainer.main", TRAINER, "RAGTUNE_TRAINER_PORT", env, log)
        )
        yield Addresses(trainer, generator)


# -- driving a job --------------------------------------------------------------------------------


async def upload(stub: trainer_pb2_grpc.TrainerServiceStub, lines: Sequence[str], filename: str) -> pb.Dataset:
    data = ("\n".join(lines) + "\n").encode()

    async def requests() -> AsyncIterator[pb.UploadDatasetRequest]:
        yield pb.UploadDatasetRequest(header=pb.DatasetHeader(tenant=TENANT, filename=filename))
        for start in range(0, len(data), 64 * 1024):
            yield pb.UploadDatasetRequest(chunk=data[start : start + 64 * 1024])

    reply = await stub.UploadDataset(requests(), timeout=RPC_TIMEOUT_S)
    if not reply.report.valid:
        raise RuntimeError(f"dataset {filename} rejected: {list(reply.report.errors)[:5]}")
    dataset: pb.Dataset = reply.dataset
    return dataset


def job_request(
    dataset_id: str,
    *,
    epochs: int,
    batch: int,
    lr_multiplier: float,
    r: int,
    max_seq_length: int,
    seed: int,
    suffix: str,
    validation_file: str = "",
    eval_interval_steps: int = 0,
    checkpoint_interval_steps: int = 0,
) -> pb.CreateJobRequest:
    """LoRA r with alpha 2r and the default targets (all seven); no validation split: evaluation only
    on a ``validation_file``, every ``eval_interval_steps``."""
    return pb.CreateJobRequest(
        tenant=TENANT,
        training_file=dataset_id,
        validation_file=validation_file,
        validation_fraction=0.0,
        eval_interval_steps=eval_interval_steps,
        checkpoint_interval_steps=checkpoint_interval_steps,
        hyperparameters=pb.Hyperparameters(
            n_epochs=pb.NumberOrAuto(number=epochs),
            batch_size=pb.NumberOrAuto(number=batch),
            learning_rate_multiplier=pb.NumberOrAuto(number=lr_multiplier),
        ),
        lora=pb.LoraConfig(r=r, alpha=2.0 * r),
        seed=seed,
        max_seq_length=max_seq_length,
        suffix=suffix,
    )


async def cancel_leftover_jobs(stub: trainer_pb2_grpc.TrainerServiceStub) -> list[str]:
    """Cancel the bench tenant's unfinished jobs: a run interrupted mid-job leaves one, and the next
    run's trainer (same bench database) would resume it before the jobs it is asked for."""
    cancelled, token = [], ""
    while True:
        page = pb_common.PageRequest(page_size=100, page_token=token)
        reply = await stub.ListJobs(pb.ListJobsRequest(tenant=TENANT, page=page), timeout=60)
        for job in reply.jobs:
            if job.status not in (pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED):
                await stub.CancelJob(pb.CancelJobRequest(tenant=TENANT, id=job.id), timeout=60)
                cancelled.append(job.id)
        token = reply.next_page_token
        if not token:
            return cancelled


def event_time(event: pb.JobEvent) -> float:
    return float(event.created_at.ToDatetime(tzinfo=UTC).timestamp())


@dataclass
class JobRun:
    """A finished job and its events, with the moments the benchmarks read."""

    job: pb.Job
    events: list[pb.JobEvent]

    def _first(self, kind: str, test: Callable[[Any], bool] = lambda _: True) -> float:
        for event in self.events:
            if event.WhichOneof("event") == kind and test(getattr(event, kind)):
                return event_time(event)
        raise LookupError(f"job {self.job.id} has no {kind} event like that")

    @property
    def started(self) -> float:
        """The training process's ``started`` event: data tokenized, model loaded, train() next."""
        return self._first("started")

    @property
    def last_step(self) -> float:
        """The progress event of the last optimizer step."""
        return self._first("progress", lambda p: p.step == p.total_steps)

    @property
    def succeeded(self) -> float:
        return self._first("status", lambda s: s.status == pb.JOB_STATUS_SUCCEEDED)

    @property
    def published(self) -> float:
        return self._first("publish")

    def timeline(self) -> dict[str, float]:
        """Seconds from the job's creation to each stage (absent stages left out)."""
        t0 = float(self.job.created_at.ToDatetime(tzinfo=UTC).timestamp())
        stages = {
            "started_event": "started",
            "last_step": "last_step",
            "succeeded": "succeeded",
            "published": "published",
        }
        out = {"claimed": round(float(self.job.started_at.ToDatetime(tzinfo=UTC).timestamp()) - t0, 2)}
        for key, attr in stages.items():
            with suppress(LookupError):
                out[key] = round(getattr(self, attr) - t0, 2)
        return out


async def run_job(
    stub: trainer_pb2_grpc.TrainerServiceStub,
    request: pb.CreateJobRequest,
    on_event: Callable[[pb.JobEvent], Awaitable[None]] | None = None,
) -> JobRun:
    """CreateJob, then follow WatchJob to the end (for a success: until its publish outcome)."""
    job = (await stub.CreateJob(request, timeout=RPC_TIMEOUT_S)).job
    events = []
    async for event in stub.WatchJob(pb.WatchJobRequest(tenant=TENANT, id=job.id), timeout=RPC_TIMEOUT_S):
        events.append(event)
        if on_event is not None:
            await on_event(event)
    job = (await stub.GetJob(pb.GetJobRequest(tenant=TENANT, id=job.id), timeout=60)).job
    if job.status != pb.JOB_STATUS_SUCCEEDED:
        raise RuntimeError(f"job {job.id} ended {pb.JobStatus.Name(job.status)}: {job.error}")
    return JobRun(job, events)
