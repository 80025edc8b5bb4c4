"""eval_tasks: the four-arm task evaluation (base zero-shot, rag = retrieved labelled examples as
demonstrations, ft = LoRA, rag+ft) on a public classification, extraction or answer-format set,
through the whole stack (retriever, generator, trainer, gateway as separate processes; the harness
``ragtune_eval.task_runner`` as a REST client).

Measured: the task's headline score on held-out items (accuracy for classification and answer
format, item F1 for extraction) per arm with intervals, latency, prompt tokens, costs, the paired
differences and, with ``--tasks-curve``, a learning curve. Baseline: the base model zero-shot in the
same run. Target: the fine-tuned arm beats it with a paired interval above zero (the issue's
classification and extraction claim). Subsampled to fit 2 cores: ``--tasks-labels`` intents x
``--tasks-train`` examples each (classification), ``--tasks-test`` stratified held-out items from
the set's test file. The set's folder defaults to ``<--datasets>/<set>``; rerunning with the same
``--tasks-run-dir`` resumes; ``--tasks-report-only`` rebuilds its report from the stored answers.
Figures go to ``bench/results/eval_tasks-<set>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.code_version import VERSION_FILE, check_run_code, code_version
from bench.common import REPO, RESULTS_DIR, Context, ratio_or_none, report, write_result
from bench.eval_squad import PrintedProgress, evaluate_on_stack
from ragtune_eval.public_sets import PUBLIC_SETS, load_public_set
from ragtune_eval.rundir import RunDir
from ragtune_eval.task_markdown import to_task_markdown
from ragtune_eval.task_runner import TaskEvalConfig, TaskEvaluation
from ragtune_eval.task_split import split_task

NAME = "eval_tasks"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--tasks-set", choices=sorted(PUBLIC_SETS), default="banking77")
    group.add_argument("--tasks-data", type=Path, default=None, help="the set's folder (default <datasets>/<set>)")
    group.add_argument("--tasks-train", type=int, default=10, help="training examples (per label for classification)")
    group.add_argument("--tasks-test", type=int, default=40, help="held-out items (stratified over the labels)")
    group.add_argument(
        "--tasks-labels", type=int, default=5, help="classification: a seeded choice of labels (0 = all)"
    )
    group.add_argument("--tasks-seed", type=int, default=0)
    group.add_argument("--tasks-epochs", type=int, default=5)
    group.add_argument("--tasks-batch-size", type=int, default=8)
    group.add_argument("--tasks-lr-multiplier", type=float, default=5.0, help="x the trainer's base learning rate")
    group.add_argument("--tasks-shots", type=int, default=4, help="retrieved demonstrations")
    group.add_argument("--tasks-curve", default="", help="learning curve: smaller training sizes, e.g. 1,2,5")
    group.add_argument("--tasks-train-sample", type=int, default=20, help="training examples also answered")
    group.add_argument("--tasks-max-tokens", type=int, default=0, help="answer cap; 0 = the task's default")
    group.add_argument("--tasks-concurrency", type=int, default=8)
    group.add_argument("--tasks-run-dir", type=Path, default=None, help="default: <state-dir>/eval-tasks-<set>-<sizes>")
    group.add_argument("--tasks-recompute-stale", action="store_true", help="ask again answers from other code")
    group.add_argument(
        "--tasks-report-only",
        action="store_true",
        help="rebuild the report of --tasks-run-dir from its stored answers (no stack, nothing asked)",
    )


def run(ctx: Context, args: argparse.Namespace) -> bool:
    name = args.tasks_set
    data = load_public_set(name, args.tasks_data or ctx.datasets / name)
    classification = data.kind == "classification"
    labels = args.tasks_labels if classification else 0
    curve = tuple(int(v) for v in args.tasks_curve.split(",") if v.strip())
    sizes = f"{labels}x{args.tasks_train}" if classification else str(args.tasks_train)
    run_dir = (
        args.tasks_run_dir or ctx.state_dir / f"eval-tasks-{name}-{sizes}-{args.tasks_test}-{args.tasks_seed}"
    ).resolve()
    version = code_version(REPO)
    if not args.tasks_report_only:
        for stale in check_run_code(run_dir, version, recompute=args.tasks_recompute_stale):
            print(f"  deleted stale answers {stale} (other code version)", flush=True)
    split = split_task(
        data, args.tasks_train, args.tasks_test, args.tasks_seed, args.tasks_train_sample, classification, labels
    )
    config = TaskEvalConfig(
        dataset=name,
        kind=data.kind,
        train=args.tasks_train,
        test=args.tasks_test,
        per_class=classification,
        labels=labels,
        seed=args.tasks_seed,
        train_sample=args.tasks_train_sample,
        shots=args.tasks_shots,
        max_tokens=args.tasks_max_tokens,
        epochs=args.tasks_epochs,
        batch_size=args.tasks_batch_size,
        learning_rate_multiplier=args.tasks_lr_multiplier,
        curve=curve,
        concurrency=args.tasks_concurrency,
    )
    start = time.perf_counter()
    if args.tasks_report_only:  # the answers' own code version stays recorded in the run dir
        if not (run_dir / "config.json").exists():
            raise SystemExit(f"{run_dir} holds no task run to report on")
        offline: Any = None  # asks nothing: report() only reads the run dir
        built = asyncio.run(TaskEvaluation(offline, data, split, config, RunDir(run_dir)).report())
    else:
        built = evaluate_on_stack(
            ctx,
            "tasks",
            run_dir,
            lambda client: TaskEvaluation(client, data, split, config, RunDir(run_dir), PrintedProgress()),
        )
    seconds: float | None = time.perf_counter() - start
    result_name = f"{NAME}-{name}"
    answered_by = version
    if args.tasks_report_only:  # the run's own wall-clock and code, as its last full pass recorded them
        answered_by = json.loads((run_dir / VERSION_FILE).read_text(encoding="utf-8"))
        before = RESULTS_DIR / f"{result_name}.json"
        earlier = json.loads(before.read_text(encoding="utf-8")) if before.exists() else {}
        seconds = earlier.get("total_seconds") if earlier.get("run_dir") == str(run_dir) else None
    print(to_task_markdown(built), flush=True)
    arms = built["arms"]
    base, ft = arms["base"]["score"], arms["ft"]["score"]
    difference = next(
        (c["score"] for c in built["comparisons"] if (c["baseline"], c["candidate"]) == ("base", "ft")), None
    )
    passed = bool(difference and difference["significant"] and difference["difference"] > 0)
    ratio = ratio_or_none(ft, base)
    shown = f"{ratio:.2f}" if ratio is not None else "n/a (base scores 0)"
    headline = built["headline"]
    report(NAME, f"{name} {headline}: ft {ft:.1f} vs base {base:.1f} -> ratio {shown} (target ft > base)", passed)
    write_result(
        result_name,
        measured=f"{headline} of the ft arm on {len(split.test)} held-out {name} items",
        baseline={"what": f"{headline} of the base model zero-shot, same items, same run", "value": base},
        value=ft,
        ratio=round(ratio, 4) if ratio is not None else None,
        target="ft above base with a paired interval excluding zero",
        passed=passed,
        task=built["task"],
        arms=arms,
        comparisons=built["comparisons"],
        learning_curve=built.get("learning_curve"),
        recommendation=built["recommendation"],
        config=built["config"],
        run_dir=str(run_dir),
        code_version=answered_by,
        report_code_version=version,
        total_seconds=round(seconds, 1) if seconds is not None else None,
    )
    return passed
