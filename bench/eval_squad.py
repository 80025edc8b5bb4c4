"""eval_squad: the four-arm evaluation (base, rag, ft, rag+ft) on SQuAD v1.1 dev through the whole
stack (retriever, generator, trainer, gateway as separate processes, the eval as a REST client).

Measured: token F1 (SQuAD normalisation) of each arm on held-out questions, with EM, retrieval
hit@k, latency p50/p95, output tokens/s and the costs of each arm; the full report (JSON, Markdown,
PNG) lands in the run directory. Baseline: the base model alone, measured in the same run.
Target: rag beats base on token F1 (ratio rag/base > 1). The acceptance size is a few hundred
questions each (``--eval-train 300 --eval-test 300``, under an hour on 2 cores); rerunning with the
same ``--eval-run-dir`` resumes where a run stopped.

The run directory records the code version (git commit, dirty flag, hash of the diff) that wrote its
answers (``bench.code_version``): a resume under other code is refused, or with
``--eval-recompute-stale`` the stored answers are deleted and asked again (the adapters trained by
the older run are kept). A zero base F1 gives no ratio: the result holds null, never ``Infinity``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

from bench.code_version import check_run_code, code_version
from bench.common import REPO, Context, ratio_or_none, report, service_process, write_result
from bench.gateway_common import ADMIN_KEY, gateway_process, new_tenant
from ragtune_eval.client import GatewayClient
from ragtune_eval.dataset import load_qa, split_dataset
from ragtune_eval.markdown_report import to_markdown
from ragtune_eval.rundir import RunDir
from ragtune_eval.runner import QaEvalConfig, QaEvaluation

NAME = "eval_squad"
RETRIEVER = "ragtune.retriever.v1.RetrieverService"
GENERATOR = "ragtune.generator.v1.GeneratorService"
TRAINER = "ragtune.trainer.v1.TrainerService"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--eval-train", type=int, default=300, help="training questions")
    group.add_argument("--eval-test", type=int, default=300, help="held-out questions")
    group.add_argument("--eval-seed", type=int, default=0)
    group.add_argument("--eval-epochs", type=int, default=2, help="epochs of the closed-book adapter")
    group.add_argument("--eval-raft-epochs", type=int, default=1, help="epochs of the RAFT adapter")
    group.add_argument("--eval-raft-train", type=int, default=100, help="RAFT examples (0 = every train question)")
    group.add_argument("--eval-max-tokens", type=int, default=16, help="answer length cap (answers are short)")
    group.add_argument("--eval-raft-recipe", choices=("published", "answer-only"), default="published")
    group.add_argument("--eval-reasoning-max-tokens", type=int, default=96, help="answer cap of the reasoning adapter")
    group.add_argument("--eval-paraphrases", type=int, default=0, help="closed-book examples, question rephrased")
    group.add_argument("--eval-train-sample", type=int, default=40, help="training questions also asked")
    group.add_argument("--eval-concurrency", type=int, default=8)
    group.add_argument("--eval-run-dir", type=Path, default=None, help="default: <state-dir>/eval-squad-<sizes>")
    group.add_argument(
        "--eval-recompute-stale",
        action="store_true",
        help="delete answers a reused run dir holds from other code and ask again (default: refuse)",
    )


class PrintedProgress:
    """Progress as log lines (a benchmark's output is a log, not a terminal)."""

    def __init__(self) -> None:
        self.totals: dict[str, int | None] = {}
        self.last: dict[str, float] = {}

    def start(self, key: str, description: str, total: int | None) -> None:
        self.totals[key] = total
        print(f"  {description} ({total if total is not None else '?'})", flush=True)

    def update(self, key: str, completed: int, total: int | None = None, note: str = "") -> None:
        total = total or self.totals.get(key)
        if time.monotonic() - self.last.get(key, 0) > 30 or (total and completed >= total):
            self.last[key] = time.monotonic()
            print(f"    {key}: {completed}/{total if total else '?'} {note}", flush=True)

    def log(self, message: str) -> None:
        print(f"  {message}", flush=True)


def _tenant_key(url: str, run_dir: Path) -> str:
    """The run's tenant (kept in the run dir, so a resumed run finds its store and adapters)."""
    path = run_dir / "bench-tenant.json"
    if path.exists():
        return str(json.loads(path.read_text())["key"])
    tenant, key = new_tenant(url, "eval")
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tenant": tenant, "key": key}))
    return key


def eval_stack(ctx: Context, stack: ExitStack, prefix: str) -> str:
    """Retriever, generator, trainer and gateway as separate processes over the bench's database
    (logs under ``<state>/logs/<prefix>-*.log``), stopped when ``stack`` closes; the gateway's URL."""
    logs = ctx.state_dir / "logs"
    env = {**os.environ, "DATABASE_URL": ctx.database_url, "RAGTUNE_STATE_DIR": str(ctx.state_dir)}
    retriever = stack.enter_context(
        service_process(
            "ragtune_retriever.main", RETRIEVER, "RAGTUNE_RETRIEVER_PORT", env, logs / f"{prefix}-retriever.log"
        )
    )
    generator_env = {**env, "RAGTUNE_GENERATOR_KV_CACHE_GIB": "1"}
    generator = stack.enter_context(
        service_process(
            "ragtune_generator.main",
            GENERATOR,
            "RAGTUNE_GENERATOR_PORT",
            generator_env,
            logs / f"{prefix}-generator.log",
        )
    )
    trainer_env = {
        **env,
        "RAGTUNE_TRAINER_GENERATOR_ADDRESS": generator,
        "RAGTUNE_TRAINER_RETRIEVER_ADDRESS": retriever,
        "RAGTUNE_TRAINER_MIN_EXAMPLES": "1",
    }
    trainer = stack.enter_context(
        service_process(
            "ragtune_trainer.main", TRAINER, "RAGTUNE_TRAINER_PORT", trainer_env, logs / f"{prefix}-trainer.log"
        )
    )
    gateway_env = {
        **env,
        "RAGTUNE_GATEWAY_ADMIN_KEY": ADMIN_KEY,
        "RAGTUNE_GATEWAY_RETRIEVER_ADDRESS": retriever,
        "RAGTUNE_GATEWAY_GENERATOR_ADDRESS": generator,
        "RAGTUNE_GATEWAY_TRAINER_ADDRESS": trainer,
    }
    return str(stack.enter_context(gateway_process(gateway_env, logs / f"{prefix}-gateway.log")))


class Evaluation(Protocol):
    async def execute(self) -> dict[str, Any]: ...


def evaluate_on_stack(
    ctx: Context, prefix: str, run_dir: Path, evaluation: Callable[[GatewayClient], Evaluation]
) -> dict[str, Any]:
    """Starts the stack (:func:`eval_stack`), runs ``evaluation(client)`` as the run's tenant and
    stops the stack; the evaluation's report."""
    start = time.perf_counter()
    with ExitStack() as stack:
        url = eval_stack(ctx, stack, prefix)
        print(f"  stack up in {time.perf_counter() - start:.0f}s; run dir {run_dir}", flush=True)
        key = _tenant_key(url, run_dir)

        async def evaluate() -> dict[str, Any]:
            async with GatewayClient(url, key) as client:
                return await evaluation(client).execute()

        return asyncio.run(evaluate())


def run(ctx: Context, args: argparse.Namespace) -> bool:
    dataset = ctx.datasets / "squad-v1.1" / "dev-v1.1.json"
    run_dir = (
        args.eval_run_dir or ctx.state_dir / f"eval-squad-{args.eval_train}-{args.eval_test}-{args.eval_seed}"
    ).resolve()
    version = code_version(REPO)
    for stale in check_run_code(run_dir, version, recompute=args.eval_recompute_stale):
        print(f"  deleted stale answers {stale} (other code version)", flush=True)
    split = split_dataset(load_qa(dataset), args.eval_train, args.eval_test, args.eval_seed, args.eval_train_sample)
    config = QaEvalConfig(
        dataset=dataset.name,
        train=args.eval_train,
        test=args.eval_test,
        seed=args.eval_seed,
        epochs=args.eval_epochs,
        raft_epochs=args.eval_raft_epochs,
        raft_train=args.eval_raft_train,
        max_tokens=args.eval_max_tokens,
        raft_recipe=args.eval_raft_recipe,
        reasoning_max_tokens=args.eval_reasoning_max_tokens,
        paraphrases=args.eval_paraphrases,
        train_sample=args.eval_train_sample,
        concurrency=args.eval_concurrency,
    )
    start = time.perf_counter()
    built = evaluate_on_stack(
        ctx, "eval", run_dir, lambda client: QaEvaluation(client, split, config, RunDir(run_dir), PrintedProgress())
    )
    seconds = time.perf_counter() - start
    print(to_markdown(built), flush=True)
    arms = built["arms"]
    rag, base = arms["rag"]["f1"], arms["base"]["f1"]
    ratio = ratio_or_none(rag, base)
    passed = rag > base
    shown = f"{ratio:.2f}" if ratio is not None else "n/a (base F1 is 0)"
    report(NAME, f"token F1 rag {rag:.1f} vs base {base:.1f} -> ratio {shown} (target rag > base)", passed)
    write_result(
        NAME,
        measured=f"token F1 of the rag arm on {args.eval_test} held-out SQuAD v1.1 dev questions",
        baseline={"what": "token F1 of the base model alone, same questions, same run", "value": base},
        value=rag,
        ratio=round(ratio, 4) if ratio is not None else None,
        target="rag F1 > base F1",
        passed=passed,
        arms=arms,
        recommendation=built["recommendation"],
        config=built["config"],
        run_dir=str(run_dir),
        code_version=version,
        total_seconds=round(seconds, 1),
    )
    return passed
