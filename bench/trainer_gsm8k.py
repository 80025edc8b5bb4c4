"""trainer_gsm8k: a real small fine-tune through the trainer, judged on held-out GSM8K questions.

Training: ``--gsm-train`` problems of GSM8K train (seeded shuffle, each <= 512 tokens) as chat
examples, user = question, assistant = the worked solution ending ``#### N`` (calculator notes
``<<...>>`` removed); one trainer job (``--gsm-epochs`` epochs, batch ``--gsm-batch``, learning rate
2e-4 x ``--gsm-lr-mult``, LoRA r ``--gsm-rank`` / alpha 2r on all projections, seed fixed, no
validation split), published to the real generator.

Measured: ``--gsm-test`` GSM8K test questions (seeded shuffle), each asked as one user message
(the question, then the same answer-format instruction, ``FORMAT_INSTRUCTION``, for both sides:
without it the base model is never told about ``#### N`` and its strict score is ~0 by
construction) through the generator's ``GenerateUnary`` at temperature 0 (seeded),
``--gsm-max-tokens`` tokens, before (base model) and after (the job's adapter). Figures per side:
exact match of the number after the last ``####`` with the reference (commas and ``$`` ignored,
compared as numbers), the share of answers with a ``#### N`` at all, and exact match of the last
number in the answer (format-free, to tell learned format from learned arithmetic). Each of the two
scores is judged with McNemar's exact test on the same questions (questions gained / lost, two-sided
p). Ratio = after / before exact match, null when before is 0 (then the difference tells); passed
when after > before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, Context, aio_channel, finite, machine_info, report
from bench.stats import mcnemar_exact
from bench.trainer_common import (
    TENANT,
    Problem,
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
from bench.trainer_publish_latency import unload_tenant
from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune.generator.v1 import generator_pb2_grpc
from ragtune.trainer.v1 import trainer_pb2 as pb
from ragtune.trainer.v1 import trainer_pb2_grpc

NAME = "trainer_gsm8k"
SEED = 1234
CONCURRENCY = 16
_HASH = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)\s*\.?\s*$", re.MULTILINE)  # ends its line: not a heading
_NUMBER = re.compile(r"-?[\d,]*\.?\d+")
FORMAT_INSTRUCTION = "Solve the problem step by step. End your answer with a final line '#### N', N being the answer."


def prompt(question: str) -> str:
    """What both sides are asked: the question, then the answer-format instruction."""
    return f"{question}\n\n{FORMAT_INSTRUCTION}"


def paired_tests(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """McNemar's exact test of after vs before on the same questions, for both scores."""
    for b, a in zip(before, after, strict=True):
        if b["question"] != a["question"]:
            raise ValueError("before and after answers are not paired on the same questions")
    return {key: mcnemar_exact([b[key] for b in before], [a[key] for a in after]) for key in ("exact", "last_number")}


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--gsm-train", type=int, default=200, help="GSM8K train problems")
    group.add_argument("--gsm-test", type=int, default=100, help="GSM8K test questions")
    group.add_argument("--gsm-epochs", type=int, default=1)
    group.add_argument("--gsm-batch", type=int, default=8)
    group.add_argument("--gsm-lr-mult", type=float, default=5.0, help="x the trainer's base learning rate 2e-4")
    group.add_argument("--gsm-rank", type=int, default=16)
    group.add_argument("--gsm-max-tokens", type=int, default=200)


def as_number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", "").rstrip("."))
    except InvalidOperation:
        return None


def score(text: str, reference: str) -> dict[str, bool]:
    """Strict (``#### N``) and format-free (last number) exact match, and whether ``#### N`` is used."""
    gold = as_number(reference)
    tagged = _HASH.findall(text)
    numbers = _NUMBER.findall(text)
    return {
        "formatted": bool(tagged),
        "exact": bool(tagged) and as_number(tagged[-1]) == gold,
        "last_number": bool(numbers) and as_number(numbers[-1]) == gold,
    }


async def evaluate(address: str, problems: list[Problem], adapter: str, max_tokens: int) -> dict[str, Any]:
    """Every question through GenerateUnary (CONCURRENCY at a time); the scores and a few answers."""
    async with aio_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def ask(problem: Problem) -> gpb.Completion:
            request = gpb.GenerateRequest(
                messages=[gpb.ChatMessage(role="user", content=prompt(problem.question))],
                sampling=gpb.SamplingParams(temperature=0, max_tokens=max_tokens, seed=SEED),
                adapter=adapter,
                tenant=TENANT,
            )
            async with gate:
                completion: gpb.Completion = await stub.GenerateUnary(request, timeout=1800)
                return completion

        start = time.perf_counter()
        completions = await asyncio.gather(*(ask(p) for p in problems))
        wall = time.perf_counter() - start
    scores = [score(c.text, p.answer) for c, p in zip(completions, problems, strict=True)]
    n = len(problems)
    return {
        "exact_match": sum(s["exact"] for s in scores) / n,
        "format_rate": sum(s["formatted"] for s in scores) / n,
        "last_number_match": sum(s["last_number"] for s in scores) / n,
        "truncated_rate": sum(c.finish_reason == gpb.FINISH_REASON_LENGTH for c in completions) / n,
        "mean_completion_tokens": sum(c.usage.completion_tokens for c in completions) / n,
        "wall_s": round(wall, 1),
        "answers": [
            {"question": p.question, "reference": p.answer, "answer": c.text, **s}
            for p, c, s in zip(problems, completions, scores, strict=True)
        ],
    }


async def _train(address: str, lines: list[str], args: argparse.Namespace) -> Any:
    async with aio_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        dataset = await upload(stub, lines, "gsm8k-train.jsonl")
        request = job_request(
            dataset.id,
            epochs=args.gsm_epochs,
            batch=args.gsm_batch,
            lr_multiplier=args.gsm_lr_mult,
            r=args.gsm_rank,
            max_seq_length=512,
            seed=SEED,
            suffix="gsm8k",
        )

        async def progress(event: pb.JobEvent) -> None:
            if event.HasField("progress") and (event.progress.step % 8 == 0 or event.progress.step == 1):
                p = event.progress
                print(f"    step {p.step}/{p.total_steps} loss {p.train_loss:.3f} eta {p.eta_seconds:.0f}s", flush=True)

        return await run_job(stub, request, progress)


async def _unload(address: str) -> None:
    async with aio_channel(address) as channel:
        await unload_tenant(generator_pb2_grpc.GeneratorServiceStub(channel))


def run(ctx: Context, args: argparse.Namespace) -> bool:
    tokenizer = load_tokenizer(ctx)
    train = [
        p for p, _ in pick_fitting(tokenizer, shuffled(load_gsm8k(ctx.datasets, "train"), SEED), args.gsm_train, 512)
    ]
    test = shuffled(load_gsm8k(ctx.datasets, "test"), SEED)[: args.gsm_test]
    walls: dict[str, float] = {}
    with services(ctx, "gsm8k", with_generator=True) as addresses:
        assert addresses.generator is not None
        asyncio.run(_unload(addresses.generator))
        try:
            start = time.perf_counter()
            before = asyncio.run(evaluate(addresses.generator, test, "", args.gsm_max_tokens))
            walls["eval_before"] = time.perf_counter() - start
            print(f"  before: {_brief(before)}", flush=True)
            start = time.perf_counter()
            job = asyncio.run(_train(addresses.trainer, [chat_line(p) for p in train], args))
            walls["train_job"] = time.perf_counter() - start
            print(
                f"  job {job.job.id}: {job.job.step} steps, {job.job.trained_tokens} trained tokens, "
                f"{job.last_step - job.started:.0f}s training, {pb.PublishState.Name(job.job.publish_state)}",
                flush=True,
            )
            if job.job.publish_state != pb.PUBLISH_STATE_PUBLISHED:
                raise RuntimeError(f"the adapter was not published: {job.job.publish_error}")
            start = time.perf_counter()
            after = asyncio.run(evaluate(addresses.generator, test, job.job.fine_tuned_model, args.gsm_max_tokens))
            walls["eval_after"] = time.perf_counter() - start
            print(f"  after: {_brief(after)}", flush=True)
        finally:
            asyncio.run(_unload(addresses.generator))
    answers = {"before": before.pop("answers"), "after": after.pop("answers")}
    path = ctx.state_dir / "trainer-bench" / "gsm8k-answers.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(answers, indent=1, ensure_ascii=False) + "\n")
    before["examples"], after["examples"] = answers["before"][:3], answers["after"][:3]
    tests = paired_tests(answers["before"], answers["after"])
    return _finish(args, before, after, job, walls, len(train), len(test), path, tests)


def _brief(side: dict[str, Any]) -> str:
    return (
        f"exact match {side['exact_match']:.3f}, '#### N' format {side['format_rate']:.3f}, last-number match"
        f" {side['last_number_match']:.3f}, truncated {side['truncated_rate']:.2f}, {side['wall_s']:.0f}s"
    )


def _finish(
    args: argparse.Namespace,
    before: dict[str, Any],
    after: dict[str, Any],
    job: Any,
    walls: dict[str, float],
    n_train: int,
    n_test: int,
    answers: Path,
    tests: dict[str, dict[str, Any]],
) -> bool:
    em_b, em_a = before["exact_match"], after["exact_match"]
    ratio = em_a / em_b if em_b else None
    passed = em_a > em_b
    shown = f"{ratio:.2f}" if ratio is not None else "n/a (before is 0)"
    report(NAME, f"exact match after {em_a:.3f} vs before {em_b:.3f} (+{em_a - em_b:.3f}) -> ratio {shown}", passed)
    print(
        f"{NAME}: '#### N' format {before['format_rate']:.3f} -> {after['format_rate']:.3f}; last-number match"
        f" {before['last_number_match']:.3f} -> {after['last_number_match']:.3f}",
        flush=True,
    )
    for key, test in tests.items():
        print(
            f"{NAME}: McNemar exact ({key}): {test['gained']} questions gained, {test['lost']} lost of"
            f" {test['n']}, two-sided p = {test['p_value']:.3g}",
            flush=True,
        )
    record = {
        "name": NAME,
        "measured": f"exact match of the final '#### N' on {n_test} held-out GSM8K test questions with the adapter",
        "baseline": {"what": "the same questions through the base model", "value": round(em_b, 4)},
        "value": round(em_a, 4),
        "ratio": round(ratio, 4) if ratio is not None else None,
        "target": "after > before (the spec asks to show value; it sets no number)",
        "passed": passed,
        "machine": machine_info(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "difference": round(em_a - em_b, 4),
        "last_number_difference": round(after["last_number_match"] - before["last_number_match"], 4),
        "paired_tests": {"what": "McNemar exact test (sign test on discordant questions), two-sided", **tests},
        "format_instruction": FORMAT_INSTRUCTION,
        "before": before,
        "after": after,
        "training": {
            "train_examples": n_train,
            "epochs": args.gsm_epochs,
            "batch_size": args.gsm_batch,
            "learning_rate": 2e-4 * args.gsm_lr_mult,
            "lora_r": args.gsm_rank,
            "seed": SEED,
            "job_id": job.job.id,
            "steps": job.job.step,
            "trained_tokens": job.job.trained_tokens,
            "final_train_loss": job.job.train_loss,
            "training_s": round(job.last_step - job.started, 1),
            "timeline_s": job.timeline(),
        },
        "eval": {"test_questions": n_test, "max_tokens": args.gsm_max_tokens, "temperature": 0, "seed": SEED},
        "wall_s": {k: round(v, 1) for k, v in walls.items()},
        "answers_file": str(answers),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{NAME}.json").write_text(json.dumps(finite(record), indent=2, allow_nan=False) + "\n")
    return passed
