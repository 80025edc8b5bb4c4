"""trainer_throughput: trained tokens/s of a trainer job vs a plain transformers Trainer + PEFT script.

Measured: a job of the trainer service (``python -m ragtune_trainer.main``, a separate process over
the bench database, which trains in a process of its own) on a GSM8K slice (``--tt-examples``
train problems, seeded shuffle, chat format, each <= ``--tt-max-seq`` tokens), batch ``--tt-batch``,
``--tt-epochs`` epochs, LoRA r 8 / alpha 16 / dropout 0.05 on all seven projections, no validation
split, float32 on CPU. Throughput = the job's ``trained_tokens`` (tokens carrying loss: assistant
tokens incl. their end-of-turn, counted per example handed to the loop) / the seconds from its
``started`` event (data tokenized, model loaded, ``Trainer.train()`` next) to the progress event of
its last step. Process start, tokenization, model load, the final checkpoint and adapter save are
outside the window (the timeline to ``succeeded`` is kept in the result).

Baseline, same run: ``bench.trainer_baseline`` on the same examples and settings (identical token
tensors and order), from just before ``Trainer.train()`` to the log of its last step, trained
tokens counted the same way. Sides alternate (job, plain, plain, job, ...) for ``--tt-pairs``
pairs. The machine is shared and other load only ever slows a run down (by 10x and more at
times), so the figure is each side's best run: ratio = best job tok/s / best plain tok/s. The
median ratio of adjacent pairs and every run (with the load average around it) are kept too.
Both sides train on the same device, ``--bench-device`` (default ``cpu``): the trainer service gets
it as ``RAGTUNE_TRAINER_DEVICE`` (its own default ``auto`` would take a GPU while the plain script
stayed on the CPU), the plain script as ``use_cpu``; the result records it. Target >= 0.95.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.common import REPO, Context, aio_channel, percentile, report, write_result
from bench.trainer_common import (
    base_model_dir,
    chat_line,
    job_request,
    load_gsm8k,
    load_tokenizer,
    pick_fitting,
    run_job,
    services,
    shuffled,
    upload,
)
from ragtune.trainer.v1 import trainer_pb2_grpc
from ragtune_trainer.jobspec import LORA_MODULES

NAME = "trainer_throughput"
TARGET = 0.95
SEED = 20240607
LORA_R, DROPOUT, BASE_LR = 8, 0.05, 2e-4


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--tt-examples", type=int, default=64, help="GSM8K train problems per run")
    group.add_argument("--tt-max-seq", type=int, default=256)
    group.add_argument("--tt-batch", type=int, default=4)
    group.add_argument("--tt-epochs", type=int, default=1)
    group.add_argument("--tt-pairs", type=int, default=3, help="job/plain pairs, alternating order")


def _plain(ctx: Context, spec: dict[str, Any]) -> dict[str, Any]:
    path = ctx.state_dir / "trainer-bench" / "plain-spec.json"
    path.write_text(json.dumps(spec))
    log = ctx.state_dir / "logs" / "trainer-plain.log"
    with log.open("ab") as err:
        done = subprocess.run(
            [sys.executable, "-m", "bench.trainer_baseline", str(path)],
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=REPO,
            check=True,
        )
    line = next(x for x in done.stdout.decode().splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


async def _job(address: str, dataset_id: str, args: argparse.Namespace, i: int) -> dict[str, Any]:
    async with aio_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        request = job_request(
            dataset_id,
            epochs=args.tt_epochs,
            batch=args.tt_batch,
            lr_multiplier=1.0,
            r=LORA_R,
            max_seq_length=args.tt_max_seq,
            seed=SEED,
            suffix=f"tput{i}",
        )
        run = await run_job(stub, request)
    return {
        "trained_tokens": run.job.trained_tokens,
        "steps": run.job.step,
        "train_s": run.last_step - run.started,
        "final_loss": next(e.progress.train_loss for e in reversed(run.events) if e.HasField("progress")),
        "job_id": run.job.id,
        "timeline_s": run.timeline(),
    }


async def _upload(address: str, lines: list[str]) -> str:
    async with aio_channel(address) as channel:
        dataset = await upload(trainer_pb2_grpc.TrainerServiceStub(channel), lines, "gsm8k-throughput.jsonl")
        return dataset.id


def run(ctx: Context, args: argparse.Namespace) -> bool:
    problems = shuffled(load_gsm8k(ctx.datasets, "train"), SEED)
    picked = pick_fitting(load_tokenizer(ctx), problems, args.tt_examples, args.tt_max_seq)
    lines = [chat_line(p) for p, _ in picked]
    folder = ctx.state_dir / "trainer-bench"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "throughput.jsonl").write_text("\n".join(lines) + "\n")
    spec = {
        "base_model_path": str(base_model_dir(ctx)),
        "train_path": str(folder / "throughput.jsonl"),
        "batch_size": args.tt_batch,
        "epochs": args.tt_epochs,
        "learning_rate": BASE_LR,
        "r": LORA_R,
        "alpha": 2.0 * LORA_R,
        "dropout": DROPOUT,
        "target_modules": list(LORA_MODULES),
        "seed": SEED,
        "device": args.bench_device,
    }
    samples: dict[str, list[dict[str, Any]]] = {"job": [], "plain": []}
    trainer_env = {"RAGTUNE_TRAINER_DEVICE": args.bench_device}
    with services(ctx, "throughput", with_generator=False, trainer_env=trainer_env) as addresses:
        dataset_id = asyncio.run(_upload(addresses.trainer, lines))
        for pair in range(max(1, args.tt_pairs)):
            for side in ("job", "plain") if pair % 2 == 0 else ("plain", "job"):
                start, load = time.perf_counter(), os.getloadavg()[0]
                if side == "job":
                    record = asyncio.run(_job(addresses.trainer, dataset_id, args, pair))
                else:
                    record = _plain(ctx, spec)
                record.update(
                    tok_per_s=record["trained_tokens"] / record["train_s"],
                    wall_s=time.perf_counter() - start,
                    load_avg_1m=(round(load, 2), round(os.getloadavg()[0], 2)),
                )
                samples[side].append(record)
                print(f"  {side} (pair {pair}): {_brief(record)}", flush=True)
    return _finish(args, samples, picked_tokens=sum(t.trained_tokens for _, t in picked))


def _brief(record: dict[str, Any]) -> str:
    return (
        f"{record['trained_tokens']} trained tokens in {record['train_s']:.1f}s = {record['tok_per_s']:.1f} tok/s,"
        f" final loss {record['final_loss']:.4f}, wall {record['wall_s']:.0f}s"
    )


def _finish(args: argparse.Namespace, samples: dict[str, list[dict[str, Any]]], picked_tokens: int) -> bool:
    job = max(s["tok_per_s"] for s in samples["job"])
    plain = max(s["tok_per_s"] for s in samples["plain"])
    ratio = job / plain
    pair_ratios = [j["tok_per_s"] / p["tok_per_s"] for j, p in zip(samples["job"], samples["plain"], strict=True)]
    passed = ratio >= TARGET
    expected = picked_tokens * args.tt_epochs
    same_tokens = all(s["trained_tokens"] == expected for side in samples.values() for s in side)
    report(
        NAME,
        f"best job {job:.1f} vs best plain Trainer+PEFT {plain:.1f} trained tok/s -> ratio {ratio:.3f}"
        f" (both on {args.bench_device}; >= {TARGET})",
        passed,
    )
    print(f"{NAME}: pair ratios {[round(r, 3) for r in pair_ratios]}, median {percentile(pair_ratios, 50):.3f}")
    if not same_tokens:
        print(f"{NAME}: WARNING trained token counts differ from the expected {expected}", flush=True)
    write_result(
        NAME,
        measured=(
            "best trained tokens/s of the trainer jobs: job.trained_tokens / (last-step progress event - started event)"
        ),
        baseline={
            "what": "plain transformers Trainer + PEFT script (bench.trainer_baseline), same tensors and settings,"
            " trained tokens / (Trainer.train() start -> last step logged)",
            "value": round(plain, 2),
        },
        value=round(job, 2),
        ratio=round(ratio, 4),
        target=f"ratio >= {TARGET}",
        passed=passed,
        settings={
            "examples": args.tt_examples,
            "max_seq_length": args.tt_max_seq,
            "batch_size": args.tt_batch,
            "epochs": args.tt_epochs,
            "lora": {"r": LORA_R, "alpha": 2 * LORA_R, "dropout": DROPOUT, "targets": list(LORA_MODULES)},
            "learning_rate": BASE_LR,
            "seed": SEED,
            "dtype": "float32",
            "device": args.bench_device,
        },
        trained_tokens_per_run=expected,
        trained_tokens_match=same_tokens,
        pair_ratios=[round(r, 4) for r in pair_ratios],
        median_pair_ratio=round(percentile(pair_ratios, 50), 4),
        runs={side: [_rounded(s) for s in runs] for side, runs in samples.items()},
    )
    return passed


def _rounded(record: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}
