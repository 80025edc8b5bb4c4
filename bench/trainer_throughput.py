"""trainer_throughput: real tokens/s of a trainer job vs plain transformers Trainer + PEFT and vs TRL's
SFTTrainer (padding-free), on two data shapes, and the training time each takes to the same
validation loss.

Shapes (``--tt-shapes``): ``squad``, SQuAD v1.1 dev as QA with its paragraph (long, varied prompts,
answers of a few tokens; ``--tt-squad``), and ``banking77``, BANKING77 train as intent
classification (short messages, one label; ``--tt-banking77``); paths default to ``--datasets``.
Each takes ``--tt-<shape>-examples`` training and ``--tt-validation`` validation examples from a
seeded shuffle, each <= ``--tt-max-seq`` tokens. Every side trains them with batch ``--tt-batch``
for ``--tt-epochs`` epochs, LoRA r 8 / alpha 16 / dropout 0.05 on all seven projections, the same
learning rate and linear schedule, float32 weights on ``--bench-device``, the same intra-op thread count
(the CPUs a process may use, as the trainer sets them), identical tokens and assistant-only masks.

Sides: ``ragtune``, a job of the trainer service (``python -m ragtune_trainer.main`` over the bench
database, training in a process of its own: packed rows, token-budget steps, loss only at trained
positions); ``plain``, ``bench.trainer_baseline`` with transformers' Trainer + PEFT and right-padded
batches; ``trl``, the same script with TRL's SFTTrainer and ``padding_free=True``; ``plain-bf16`` and
``trl-bf16``, the same with ``bf16=True`` (the Trainer's own bfloat16 autocast): the job runs at
``--tt-precision`` (auto = bf16 where the CPU has it), the baselines at their default float32, and
the -bf16 sides show how much of a ratio is precision. Sides run one
after another, the order reversed from one shape to the next and, for each shape, from one round
(``--tt-rounds``) to the next.

Measured: real (non-padding) tokens / training seconds, from the end of the step-0 evaluation (the
job's eval event; the baselines' ``on_train_begin``) to the end of the last step, evaluation time
excluded on every side. Validation loss (summed cross-entropy over every trained token of the
validation examples / their number: what the job reports) is taken at step 0 and every
``steps / --tt-evals`` steps: the job evaluates itself (its evaluation time is the gap between the
progress and eval events of a step), the baselines pause their clock. Time to target: the training seconds at the first
evaluation at or below the loss every side reaches (the highest of the sides' best losses). The job
saves its checkpoint at the end only, outside the window. Figures are each side's best round (other
load on a shared machine only slows a run). Target: >= 1.5x plain on every shape, not behind TRL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, Context, aio_channel, report, write_result
from bench.trainer_common import (
    ChatPair,
    base_model_dir,
    cancel_leftover_jobs,
    event_time,
    job_request,
    load_banking77_pairs,
    load_squad_pairs,
    load_tokenizer,
    pick_pairs,
    run_job,
    services,
    upload,
)
from ragtune.trainer.v1 import trainer_pb2_grpc
from ragtune_trainer.cpus import usable_cpus
from ragtune_trainer.datasets import write_dataset
from ragtune_trainer.jobspec import LORA_MODULES

NAME = "trainer_throughput"
TARGET_PLAIN, TARGET_TRL = 1.5, 1.0
SEED = 20240607
LORA_R, DROPOUT, BASE_LR = 8, 0.05, 2e-4
SIDES = ("ragtune", "plain", "trl", "plain-bf16")
BASELINES = ("plain", "trl", "plain-bf16", "trl-bf16")  # -bf16: the Trainer's own bf16 autocast (bf16=True)
SHAPES = ("squad", "banking77")


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--tt-shapes", default=",".join(SHAPES), help="comma-separated: squad, banking77")
    group.add_argument("--tt-squad", type=Path, default=None, help="default <datasets>/squad-v1.1/dev-v1.1.json")
    group.add_argument("--tt-banking77", type=Path, default=None, help="default <datasets>/banking77/train.csv")
    group.add_argument("--tt-squad-examples", type=int, default=32)
    group.add_argument("--tt-banking77-examples", type=int, default=128)
    group.add_argument("--tt-validation", type=int, default=16, help="validation examples per shape")
    group.add_argument("--tt-max-seq", type=int, default=384)
    group.add_argument("--tt-batch", type=int, default=8)
    group.add_argument("--tt-epochs", type=int, default=1)
    group.add_argument("--tt-evals", type=int, default=4, help="evaluations after step 0")
    group.add_argument("--tt-rounds", type=int, default=1, help="rounds of all sides on every shape")
    group.add_argument("--tt-sides", default=",".join(SIDES), help=f"comma-separated: ragtune, {', '.join(BASELINES)}")
    group.add_argument(
        "--tt-precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="the trainer's RAGTUNE_TRAINER_PRECISION (auto: bf16 where the device has it natively)",
    )


@dataclass(frozen=True)
class Shape:
    name: str
    files: dict[str, Path]  # train / validation: chat lines (upload); train_norm / validation_norm: normalised
    input_tokens: int  # real tokens of one epoch
    trained_tokens: int
    steps: int
    eval_every: int


def _prepare(ctx: Context, args: argparse.Namespace, name: str, tokenizer: Any) -> Shape:
    if name == "squad":
        pairs = load_squad_pairs(args.tt_squad or ctx.datasets / "squad-v1.1" / "dev-v1.1.json")
    elif name == "banking77":
        pairs = load_banking77_pairs(args.tt_banking77 or ctx.datasets / "banking77" / "train.csv")
    else:
        raise ValueError(f"unknown shape {name!r}: use {', '.join(SHAPES)}")
    count = getattr(args, f"tt_{name}_examples")
    picked = pick_pairs(tokenizer, pairs, count + args.tt_validation, args.tt_max_seq, SEED)
    train, held = picked[:count], picked[count:]
    folder = ctx.state_dir / "trainer-bench" / "throughput"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for part, items in (("train", train), ("validation", held)):
        chosen: list[ChatPair] = [p for p, _ in items]
        files[part] = folder / f"{name}-{part}.jsonl"
        files[part].write_text("\n".join(p.line() for p in chosen) + "\n")
        files[f"{part}_norm"] = folder / f"{name}-{part}.normalised.jsonl"
        write_dataset(files[f"{part}_norm"], [p.example(i + 1) for i, p in enumerate(chosen)])
    steps = args.tt_epochs * -(-count // args.tt_batch)
    return Shape(
        name,
        files,
        input_tokens=sum(len(t.input_ids) for _, t in train),
        trained_tokens=sum(t.trained_tokens for _, t in train),
        steps=steps,
        eval_every=max(1, steps // max(1, args.tt_evals)),
    )


def _baseline(ctx: Context, side: str, shape: Shape, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    kind = side.removesuffix("-bf16")
    spec = {
        "kind": kind,
        "bf16": side.endswith("-bf16"),
        "base_model_path": str(base_model_dir(ctx)),
        "train_path": str(shape.files["train_norm"]),
        "validation_path": str(shape.files["validation_norm"]),
        "batch_size": args.tt_batch,
        "epochs": args.tt_epochs,
        "learning_rate": BASE_LR,
        "r": LORA_R,
        "alpha": 2.0 * LORA_R,
        "dropout": DROPOUT,
        "target_modules": list(LORA_MODULES),
        "seed": SEED,
        "device": args.bench_device,
        "threads": threads,
        "eval_every": shape.eval_every,
    }
    path = ctx.state_dir / "trainer-bench" / f"{side}-spec.json"
    path.write_text(json.dumps(spec))
    log = ctx.state_dir / "logs" / f"trainer-{kind}.log"
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


async def _job(address: str, ids: dict[str, str], shape: Shape, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    async with aio_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        request = job_request(
            ids["train"],
            epochs=args.tt_epochs,
            batch=args.tt_batch,
            lr_multiplier=1.0,
            r=LORA_R,
            max_seq_length=args.tt_max_seq,
            seed=SEED,
            suffix=tag,
            validation_file=ids["validation"],
            eval_interval_steps=shape.eval_every,
            checkpoint_interval_steps=shape.steps,
        )
        run = await run_job(stub, request)
    progress: dict[int, tuple[float, float]] = {}
    for event in run.events:
        if event.WhichOneof("event") == "progress":
            progress.setdefault(event.progress.step, (event_time(event), event.progress.train_loss))
    evals = [(e.eval.step, e.eval.eval_loss, event_time(e)) for e in run.events if e.WhichOneof("event") == "eval"]
    took = {step: at - progress[step][0] for step, _, at in evals if step in progress}
    # the clock starts once the step-0 evaluation is done: Trainer set-up and that first (warm-up)
    # evaluation are outside the window, as the baselines start theirs when training begins
    started = next((at for step, _, at in evals if step == 0), run.started)
    paused, timed = 0.0, []
    for step, loss, at in evals:
        paused += took.get(step, 0.0)
        timed.append({"step": step, "eval_loss": loss, "train_s": at - started - paused})
    last = run.last_step - started - sum(took.get(step, 0.0) for step, _, _ in evals if step < run.job.total_steps)
    return {
        "trained_tokens": run.job.trained_tokens,
        "steps": run.job.step,
        "train_s": last,
        "final_loss": progress[max(progress)][1],
        "evals": timed,
        "job_id": run.job.id,
        "timeline_s": run.timeline(),
    }


async def _cancel_leftovers(address: str) -> None:
    async with aio_channel(address) as channel:
        cancelled = await cancel_leftover_jobs(trainer_pb2_grpc.TrainerServiceStub(channel))
    if cancelled:
        print(f"  cancelled jobs an interrupted run left: {cancelled}", flush=True)


async def _upload(address: str, shape: Shape) -> dict[str, str]:
    async with aio_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        ids = {}
        for part in ("train", "validation"):
            lines = shape.files[part].read_text().splitlines()
            ids[part] = (await upload(stub, lines, f"throughput-{shape.name}-{part}.jsonl")).id
        return ids


def run(ctx: Context, args: argparse.Namespace) -> bool:
    tokenizer = load_tokenizer(ctx)
    shapes = [_prepare(ctx, args, name.strip(), tokenizer) for name in args.tt_shapes.split(",") if name.strip()]
    sides = [s.strip() for s in args.tt_sides.split(",") if s.strip()]
    threads = usable_cpus()
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {s.name: {side: [] for side in sides} for s in shapes}
    trainer_env = {
        "RAGTUNE_TRAINER_DEVICE": args.bench_device,
        "RAGTUNE_TRAINER_PROGRESS_INTERVAL_S": "0",  # a progress event every step: evaluation times from the gaps
        "RAGTUNE_TRAINER_TORCH_THREADS": str(threads),
        "RAGTUNE_TRAINER_PRECISION": args.tt_precision,
    }
    with services(ctx, "throughput", with_generator=False, trainer_env=trainer_env) as addresses:
        asyncio.run(_cancel_leftovers(addresses.trainer))
        uploaded = {s.name: asyncio.run(_upload(addresses.trainer, s)) for s in shapes}
        for round_ in range(max(1, args.tt_rounds)):
            for index, shape in enumerate(shapes):
                order = sides if (round_ + index) % 2 == 0 else sides[::-1]  # each shape alternates by round
                for side in order:
                    start, load = time.perf_counter(), os.getloadavg()[0]
                    if side == "ragtune":
                        tag = f"tput-{shape.name}-{round_}"
                        record = asyncio.run(_job(addresses.trainer, uploaded[shape.name], shape, args, tag))
                    else:
                        record = _baseline(ctx, side, shape, args, threads)
                    record.update(
                        tok_per_s=shape.input_tokens * args.tt_epochs / record["train_s"],
                        trained_tok_per_s=shape.trained_tokens * args.tt_epochs / record["train_s"],
                        wall_s=time.perf_counter() - start,
                        load_avg_1m=(round(load, 2), round(os.getloadavg()[0], 2)),
                    )
                    runs[shape.name][side].append(record)
                    print(f"  {shape.name} {side} (round {round_}): {_brief(record)}", flush=True)
    return _finish(args, shapes, runs, threads)


def _brief(record: dict[str, Any]) -> str:
    evals = " ".join(f"{e['step']}:{e['eval_loss']:.3f}@{e['train_s']:.0f}s" for e in record["evals"])
    return (
        f"{record['tok_per_s']:.1f} real tok/s ({record['train_s']:.1f}s of training), final train loss"
        f" {record['final_loss']:.4f}, evals {evals}, wall {record['wall_s']:.0f}s"
    )


def time_to_target(runs: dict[str, dict[str, Any]]) -> tuple[float | None, dict[str, float | None]]:
    """The loss every side reaches (the highest of the sides' best validation losses) and each side's
    training seconds at its first evaluation at or below it."""
    best = [min(e["eval_loss"] for e in r["evals"]) for r in runs.values() if r["evals"]]
    if len(best) < len(runs):
        return None, {side: None for side in runs}
    target = max(best)
    return target, {
        side: next(e["train_s"] for e in r["evals"] if e["eval_loss"] <= target) for side, r in runs.items()
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def _finish(
    args: argparse.Namespace, shapes: list[Shape], runs: dict[str, dict[str, list[dict[str, Any]]]], threads: int
) -> bool:
    table: dict[str, dict[str, Any]] = {}
    for shape in shapes:
        best = {side: max(records, key=lambda r: r["tok_per_s"]) for side, records in runs[shape.name].items()}
        target, seconds = time_to_target(best)
        tok = {side: round(r["tok_per_s"], 2) for side, r in best.items()}
        ours = tok.get("ragtune")
        table[shape.name] = {
            "real_tokens_per_s": tok,
            "ratio_vs_plain": _ratio(ours, tok.get("plain")),
            "ratio_vs_trl": _ratio(ours, tok.get("trl")),
            "validation_target": round(target, 4) if target is not None else None,
            "train_s_to_target": {side: round(s, 2) if s is not None else None for side, s in seconds.items()},
            "time_ratio_plain_over_ragtune": _ratio(seconds.get("plain"), seconds.get("ragtune")),
            "time_ratio_trl_over_ragtune": _ratio(seconds.get("trl"), seconds.get("ragtune")),
            "ratio_vs": {side: _ratio(ours, t) for side, t in tok.items() if side != "ragtune"},
            "time_ratio_over_ragtune": {
                side: _ratio(t, seconds.get("ragtune")) for side, t in seconds.items() if side != "ragtune"
            },
            "best_eval_loss": {side: round(min(e["eval_loss"] for e in r["evals"]), 4) for side, r in best.items()},
            "real_tokens_per_epoch": shape.input_tokens,
            "trained_tokens_per_epoch": shape.trained_tokens,
            "steps": shape.steps,
        }
        row = table[shape.name]
        print(
            f"{NAME}: {shape.name}: real tok/s {tok}; ragtune / each {row['ratio_vs']};"
            f" training s to validation loss {row['validation_target']}: {row['train_s_to_target']}",
            flush=True,
        )
    plain_ratios = [t["ratio_vs_plain"] for t in table.values()]
    trl_ratios = [t["ratio_vs_trl"] for t in table.values()]
    passed = all(r is not None and r >= TARGET_PLAIN for r in plain_ratios) and all(
        r is not None and r >= TARGET_TRL for r in trl_ratios
    )
    weakest = min(table, key=lambda name: table[name]["ratio_vs_plain"] or 0.0)
    report(
        NAME,
        f"ragtune vs plain Trainer+PEFT {plain_ratios}, vs TRL padding-free {trl_ratios} on"
        f" {list(table)} (real tok/s, {args.bench_device}, {threads} threads; >= {TARGET_PLAIN}, >= {TARGET_TRL})",
        passed,
    )
    write_result(
        NAME,
        measured="best real (non-padding) tokens/s of the trainer's jobs, training seconds (evaluations excluded),"
        " on the shape where its ratio to the plain Trainer is lowest",
        baseline={
            "what": "plain transformers Trainer + PEFT, right-padded batches (bench.trainer_baseline), same tokens,"
            " masks and settings; TRL SFTTrainer padding_free beside it in shapes",
            "value": table[weakest]["real_tokens_per_s"].get("plain"),
            "shape": weakest,
        },
        value=table[weakest]["real_tokens_per_s"].get("ragtune"),
        ratio=table[weakest]["ratio_vs_plain"],
        target=f"ratio >= {TARGET_PLAIN} vs plain on every shape and >= {TARGET_TRL} vs TRL",
        passed=passed,
        shapes=table,
        settings={
            "batch_size": args.tt_batch,
            "epochs": args.tt_epochs,
            "max_seq_length": args.tt_max_seq,
            "examples": {s.name: getattr(args, f"tt_{s.name}_examples") for s in shapes},
            "validation_examples": args.tt_validation,
            "lora": {"r": LORA_R, "alpha": 2 * LORA_R, "dropout": DROPOUT, "targets": list(LORA_MODULES)},
            "learning_rate": BASE_LR,
            "seed": SEED,
            "precision": {
                "ragtune": args.tt_precision,
                "plain": "float32",
                "trl": "float32",
                "-bf16": "Trainer bf16=True",
            },
            "device": args.bench_device,
            "torch_threads": threads,
            "rounds": args.tt_rounds,
        },
        runs={
            name: {side: [_rounded(r) for r in records] for side, records in by.items()} for name, by in runs.items()
        },
    )
    return passed


def _rounded(record: dict[str, Any]) -> dict[str, Any]:
    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 4)
        if isinstance(value, list):
            return [rounded(v) for v in value]
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        return value

    return {k: rounded(v) for k, v in record.items()}
