"""traffic_loop: the loop from a team's own traffic to a better model, on BANKING77, through the
whole stack (retriever, generator, trainer, gateway as separate processes), with the official
``openai`` client wherever the dialect has the call and httpx for ragtune's extensions.

1. An alias serves the base model; a tenant that stores chat completions sends BANKING77 queries of
   ``--loop-labels`` intents (``--loop-traffic`` each) through it with a classification instruction.
2. Users rate a share of the answers (``--loop-rated-share``): a right one ``good``, a wrong one
   ``bad`` with the gold intent as its correction (metadata updates, as any client sends them).
3. Distill the rated traffic (``POST /v1/distillations``, ``--loop-holdout-fraction`` held out),
   fine-tune on the file, evaluate the adapter and the alias's holder on the held-out stored traffic
   (an eval whose data source is stored completions), and offer the adapter for the alias (it moves
   only on a significant paired improvement).
4. Fresh queries of the same intents (``--loop-after`` each, from the test file, never stored) are
   asked through the alias before the loop and again after it: the same queries, paired.

Measured: accuracy of the alias's answers (the intent, case-insensitive, within the answer) on the
fresh queries before and after, with intervals and the paired difference; the held-out eval's pass
rates; the wall-clock of every step. Baseline: the alias before the loop (the base model), same
queries, same run. Target: after above before with a paired interval above zero, and the alias
promoted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import httpx
from openai import AsyncOpenAI

from bench.common import Context, ratio_or_none, report, write_result
from bench.eval_squad import eval_stack
from bench.gateway_common import new_tenant
from ragtune_eval.public_sets import load_public_set
from ragtune_eval.significance import bootstrap_mean, compare_paired
from ragtune_eval.task_data import TaskItem

NAME = "traffic_loop"
ALIAS = "ft:banking"
APP = {"app": "banking-support"}
T = TypeVar("T")


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--loop-data", type=Path, default=None, help="BANKING77's folder (default <datasets>/banking77)")
    group.add_argument("--loop-labels", type=int, default=5, help="a seeded choice of this many intents")
    group.add_argument("--loop-traffic", type=int, default=20, help="queries per intent sent through the alias")
    group.add_argument("--loop-after", type=int, default=8, help="fresh test queries per intent, before and after")
    group.add_argument("--loop-rated-share", type=float, default=0.9, help="share of the traffic users rate")
    group.add_argument("--loop-holdout-fraction", type=float, default=0.4)
    group.add_argument("--loop-epochs", type=int, default=5)
    group.add_argument("--loop-batch-size", type=int, default=8)
    group.add_argument("--loop-lr-multiplier", type=float, default=5.0)
    group.add_argument("--loop-max-tokens", type=int, default=12)
    group.add_argument("--loop-concurrency", type=int, default=8)
    group.add_argument("--loop-seed", type=int, default=0)


def instruction(labels: list[str]) -> str:
    return (
        "Classify the bank customer's message into exactly one of these intents: "
        + ", ".join(labels)
        + ". Answer with the intent only."
    )


def right(answer: str, label: str) -> bool:
    """The intent named in the answer (the eval's string_check ``ilike``: contained, any case)."""
    return label.casefold() in answer.casefold()


def pick(items: list[TaskItem], labels: list[str], per_label: int, rng: random.Random) -> list[TaskItem]:
    chosen: list[TaskItem] = []
    for label in labels:
        pool = [i for i in items if i.target == label]
        chosen += rng.sample(pool, min(per_label, len(pool)))
    rng.shuffle(chosen)
    return chosen


class Loop:
    """One run of the loop against a gateway, as one tenant; ``steps`` the seconds of each step."""

    def __init__(self, url: str, key: str, base_model: str, args: argparse.Namespace, labels: list[str]) -> None:
        self.client = AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=2, timeout=900)
        self.http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=900)
        self.base_model, self.args, self.labels = base_model, args, labels
        self.gate = asyncio.Semaphore(args.loop_concurrency)
        self.steps: dict[str, float] = {}

    async def step(self, name: str, work: Awaitable[T]) -> T:
        start = time.perf_counter()
        result = await work
        self.steps[name] = round(time.perf_counter() - start, 1)
        print(f"  {name}: {self.steps[name]:.1f}s", flush=True)
        return result

    async def ask(self, text: str, *, store: bool) -> tuple[str, str]:
        """(completion id, answer) of one query through the alias."""
        async with self.gate:
            answer = await self.client.chat.completions.create(
                model=ALIAS,
                messages=[{"role": "system", "content": instruction(self.labels)}, {"role": "user", "content": text}],
                max_tokens=self.args.loop_max_tokens,
                temperature=0,
                store=store,
                metadata=APP if store else None,
            )
        return answer.id, answer.choices[0].message.content or ""

    async def ask_all(self, items: list[TaskItem], *, store: bool) -> list[tuple[str, str]]:
        return list(await asyncio.gather(*(self.ask(i.input, store=store) for i in items)))

    async def rate(self, traffic: list[TaskItem], answers: list[tuple[str, str]], rng: random.Random) -> int:
        """Users rate a share: right -> good, wrong -> bad with the gold intent as the correction."""
        corrected = 0
        for item, (completion_id, answer) in zip(traffic, answers, strict=True):
            if rng.random() >= self.args.loop_rated_share:
                continue
            ok = right(answer, str(item.target))
            metadata = {**APP, "feedback": "good"} if ok else {**APP, "feedback": "bad", "correction": str(item.target)}
            corrected += not ok
            async with self.gate:
                await self.client.chat.completions.update(completion_id, metadata=metadata)
        return corrected

    async def extension(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = await self.http.request(method, path, json=body)
        if reply.status_code != 200:
            raise RuntimeError(f"{method} {path}: {reply.status_code} {reply.text[:500]}")
        answer: dict[str, Any] = reply.json()
        return answer

    async def fine_tune(self, file_id: str) -> str:
        job = await self.client.fine_tuning.jobs.create(
            model=self.base_model,
            training_file=file_id,
            suffix="banking",
            hyperparameters={
                "n_epochs": self.args.loop_epochs,
                "batch_size": self.args.loop_batch_size,
                "learning_rate_multiplier": self.args.loop_lr_multiplier,
            },
        )
        while job.status not in ("succeeded", "failed", "cancelled"):
            await asyncio.sleep(5)
            job = await self.client.fine_tuning.jobs.retrieve(job.id)
        if job.status != "succeeded" or not job.fine_tuned_model:
            raise RuntimeError(f"fine-tuning job {job.id} {job.status}: {job.error}")
        return job.fine_tuned_model

    async def evaluate(self, distillation_id: str, adapter: str) -> tuple[str, dict[str, str]]:
        """The eval over the held-out stored traffic and a run of each model: (eval id, model -> run id)."""
        grader: Any = {
            "type": "string_check",
            "name": "intent",
            "input": "{{sample.output_text}}",
            "reference": "{{item.reference}}",
            "operation": "ilike",
        }
        config: Any = {"type": "stored_completions", "metadata": APP}
        evaluation = await self.client.evals.create(
            name="held-out banking traffic", data_source_config=config, testing_criteria=[grader]
        )
        runs: dict[str, str] = {}
        for model in (self.base_model, adapter):
            source: Any = {
                "type": "completions",
                "model": model,
                "input_messages": {"type": "item_reference", "item_reference": "item.input"},
                "sampling_params": {"max_completion_tokens": self.args.loop_max_tokens, "temperature": 0},
                "source": {"type": "stored_completions", "metadata": APP, "distillation_id": distillation_id},
            }
            runs[model] = (await self.client.evals.runs.create(evaluation.id, data_source=source)).id
        for run_id in runs.values():
            run = await self.client.evals.runs.retrieve(run_id, eval_id=evaluation.id)
            while run.status in ("queued", "in_progress"):
                await asyncio.sleep(5)
                run = await self.client.evals.runs.retrieve(run_id, eval_id=evaluation.id)
            if run.status != "completed":
                raise RuntimeError(f"eval run {run_id} {run.status}: {run.error}")
        return evaluation.id, runs

    async def execute(self, traffic: list[TaskItem], fresh: list[TaskItem], seed: int) -> dict[str, Any]:
        serving = {"candidate": self.base_model, "candidate_score": 0, "metric": "pass_rate"}
        await self.extension("POST", f"/v1/aliases/{ALIAS}/promotions", serving)
        before = await self.step("fresh queries before (not stored)", self.ask_all(fresh, store=False))
        answers = await self.step("traffic through the alias (stored)", self.ask_all(traffic, store=True))
        corrected = await self.step("ratings and corrections", self.rate(traffic, answers, random.Random(seed)))
        distill = {
            "filter": {"model": ALIAS, "metadata": APP, "feedback": ["good", "bad"]},
            "holdout_fraction": self.args.loop_holdout_fraction,
            "seed": seed,
        }
        distillation = await self.step("distill", self.extension("POST", "/v1/distillations", distill))
        adapter = await self.step("fine-tune", self.fine_tune(str(distillation["file_id"])))
        eval_id, runs = await self.step("evaluate on held-out traffic", self.evaluate(distillation["id"], adapter))
        comparison = await self.extension("GET", f"/v1/evals/{eval_id}/comparison")
        promote = {"alias": ALIAS, "run_id": runs[adapter]}
        decision = await self.step("promote", self.extension("POST", f"/v1/evals/{eval_id}/promote", promote))
        after = await self.step("fresh queries after (not stored)", self.ask_all(fresh, store=False))
        holder = (await self.extension("GET", f"/v1/aliases/{ALIAS}"))["model"]
        await self.http.aclose()
        await self.client.close()
        return {
            "before": [right(a, str(i.target)) for i, (_, a) in zip(fresh, before, strict=True)],
            "after": [right(a, str(i.target)) for i, (_, a) in zip(fresh, after, strict=True)],
            "traffic_right": sum(right(a, str(i.target)) for i, (_, a) in zip(traffic, answers, strict=True)),
            "corrected": corrected,
            "distillation": distillation,
            "adapter": adapter,
            "eval_id": eval_id,
            "runs": runs,
            "comparison": comparison,
            "decision": decision,
            "holder_after": holder,
            "examples": [
                {"query": i.input, "gold": i.target, "before": b[1], "after": a[1]}
                for i, b, a in list(zip(fresh, before, after, strict=True))[:5]
            ],
        }


def accuracy(values: list[bool]) -> dict[str, float]:
    interval = bootstrap_mean([float(v) for v in values])
    return {"value": 100 * interval.value, "low": 100 * interval.low, "high": 100 * interval.high}


def run(ctx: Context, args: argparse.Namespace) -> bool:
    data = load_public_set("banking77", args.loop_data or ctx.datasets / "banking77")
    rng = random.Random(args.loop_seed)
    labels = sorted(rng.sample(list(data.labels), args.loop_labels))
    traffic = pick(data.items, labels, args.loop_traffic, rng)
    fresh = pick(data.test, labels, args.loop_after, rng)
    print(f"  intents {labels}: {len(traffic)} queries of traffic, {len(fresh)} fresh", flush=True)
    start = time.perf_counter()
    with ExitStack() as stack:
        url = eval_stack(ctx, stack, "loop")
        stack_s = round(time.perf_counter() - start, 1)
        print(f"  stack up in {stack_s:.0f}s", flush=True)
        _, key = new_tenant(url, "loop")
        models = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=60).json()
        base = str(next(m["id"] for m in models["data"] if not m.get("parent") and not m.get("alias_for")))
        loop = Loop(url, key, base, args, labels)
        outcome = asyncio.run(loop.execute(traffic, fresh, args.loop_seed))
    seconds = round(time.perf_counter() - start, 1)
    return finish(args, labels, traffic, fresh, outcome, {"stack start": stack_s, **loop.steps}, seconds)


def finish(
    args: argparse.Namespace,
    labels: list[str],
    traffic: list[TaskItem],
    fresh: list[TaskItem],
    outcome: dict[str, Any],
    steps: dict[str, float],
    seconds: float,
) -> bool:
    before, after = accuracy(outcome["before"]), accuracy(outcome["after"])
    paired = compare_paired(
        "accuracy",
        "before",
        [float(v) for v in outcome["before"]],
        "after",
        [float(v) for v in outcome["after"]],
        binary=True,
    )
    change = paired.difference
    difference = {"value": 100 * change.value, "low": 100 * change.low, "high": 100 * change.high}
    ratio = ratio_or_none(after["value"], before["value"])
    promoted = bool(outcome["decision"]["promoted"])
    passed = difference["low"] > 0 and promoted
    shown = f"{ratio:.2f}" if ratio is not None else "n/a (before is 0)"
    print(
        f"  accuracy before {before['value']:.1f} [{before['low']:.1f}, {before['high']:.1f}]"
        f"  after {after['value']:.1f} [{after['low']:.1f}, {after['high']:.1f}]"
        f"  difference {difference['value']:+.1f} [{difference['low']:+.1f}, {difference['high']:+.1f}]"
        f" (McNemar p={paired.p_value})",
        flush=True,
    )
    print(f"  promotion: {outcome['decision']['reason']}", flush=True)
    for name, value in steps.items():
        print(f"  step {name}: {value:.1f}s", flush=True)
    report(
        NAME,
        f"alias accuracy after {after['value']:.1f} vs before {before['value']:.1f} -> ratio {shown}"
        " (target: a paired interval above zero, alias promoted)",
        passed,
    )
    held = {r["model"]: r["pass_rate"]["intent"] for r in outcome["comparison"]["runs"]}
    write_result(
        NAME,
        measured=f"accuracy of the alias's answers on {len(fresh)} fresh BANKING77 queries of {len(labels)} intents,"
        " after the loop (traffic, feedback, distill, fine-tune, evaluate, promote)",
        baseline={"what": "the alias before the loop (the base model), same queries, same run", **before},
        value=after["value"],
        ratio=round(ratio, 4) if ratio is not None else None,
        target="after above before with a paired interval above zero, and the alias promoted",
        passed=passed,
        after=after,
        difference=difference,
        mcnemar_p=paired.p_value,
        promoted=promoted,
        promotion_reason=outcome["decision"]["reason"],
        alias_holder_after=outcome["holder_after"],
        adapter=outcome["adapter"],
        held_out_eval={"eval_id": outcome["eval_id"], "pass_rate": held},
        distillation={k: outcome["distillation"][k] for k in ("id", "file_id", "counts")},
        traffic={
            "queries": len(traffic),
            "answered_right": outcome["traffic_right"],
            "corrected": outcome["corrected"],
        },
        intents=labels,
        step_seconds=steps,
        examples=outcome["examples"],
        config={k: v if not isinstance(v, Path) else str(v) for k, v in vars(args).items() if k.startswith("loop_")},
        total_seconds=seconds,
    )
    return passed
