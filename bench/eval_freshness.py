"""eval_freshness: how soon each arm answers with a fact that changed in the documents, through the
whole stack (retriever, generator, trainer, gateway as separate processes; the harness
``ragtune_eval.freshness_runner`` as a REST client).

A knowledge set of ``--fresh-items`` SQuAD v1.1 dev questions (one per passage, each answer a span
of its passage) goes into a vector store (rag) and into a closed-book LoRA adapter (ft); then each
gold answer is replaced in its passage by a seeded counterfactual of the same kind
(``ragtune_eval.freshness_edit``) and each arm is refreshed: re-ingesting the edited documents, or
retraining the adapter on the edited facts. Measured: the time from the edit to the first answer that
gives a new fact, the share of answers giving the new (and the old) fact before and after each
refresh with intervals, rag+ft with the old and the retrained adapter.

Baseline: the retraining path (ft), measured in the same run. Value: the re-ingest path (rag).
Ratio: time to fresh ft / rag. Target: re-ingesting is fresh sooner (ratio > 1) and lifts rag's
answers with the new fact by a paired interval above zero. Rerunning with the same
``--fresh-run-dir`` resumes the steps before the edit and measures the refreshes again if they
were interrupted.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from bench.code_version import check_run_code, code_version
from bench.common import REPO, Context, report, write_result
from bench.eval_squad import PrintedProgress, evaluate_on_stack
from ragtune_eval.dataset import load_qa
from ragtune_eval.freshness_edit import answer_pool, plan_edits
from ragtune_eval.freshness_report import to_markdown
from ragtune_eval.freshness_runner import FreshnessConfig, FreshnessEvaluation
from ragtune_eval.rundir import RunDir

NAME = "eval_freshness"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--fresh-data", type=Path, default=None, help="SQuAD JSON (default <datasets>/squad-v1.1)")
    group.add_argument("--fresh-items", type=int, default=32, help="facts (questions, one per passage)")
    group.add_argument("--fresh-seed", type=int, default=0)
    group.add_argument("--fresh-epochs", type=int, default=8, help="epochs of each closed-book adapter")
    group.add_argument("--fresh-batch-size", type=int, default=8)
    group.add_argument("--fresh-lr-multiplier", type=float, default=5.0, help="x the trainer's base learning rate")
    group.add_argument("--fresh-max-tokens", type=int, default=32, help="answer length cap")
    group.add_argument("--fresh-concurrency", type=int, default=4)
    group.add_argument("--fresh-no-rag-ft", action="store_true", help="skip the rag+ft answers")
    group.add_argument("--fresh-run-dir", type=Path, default=None, help="default: <state-dir>/eval-freshness-<n>")
    group.add_argument("--fresh-recompute-stale", action="store_true", help="ask again answers from other code")


def run(ctx: Context, args: argparse.Namespace) -> bool:
    path = args.fresh_data or ctx.datasets / "squad-v1.1" / "dev-v1.1.json"
    items = load_qa(path)
    edits = plan_edits(items, answer_pool(items), args.fresh_items, args.fresh_seed)
    run_dir = (args.fresh_run_dir or ctx.state_dir / f"eval-freshness-{args.fresh_items}-{args.fresh_seed}").resolve()
    version = code_version(REPO)
    if check_run_code(run_dir, version, recompute=args.fresh_recompute_stale):
        # answers before the edit cannot be asked again of an edited store: the whole run starts over
        print(f"  {run_dir} held answers from other code: starting the run over", flush=True)
        shutil.rmtree(run_dir)
        check_run_code(run_dir, version, recompute=False)
    config = FreshnessConfig(
        dataset=path.name,
        items=len(edits),
        seed=args.fresh_seed,
        max_tokens=args.fresh_max_tokens,
        epochs=args.fresh_epochs,
        batch_size=args.fresh_batch_size,
        learning_rate_multiplier=args.fresh_lr_multiplier,
        rag_ft=not args.fresh_no_rag_ft,
        concurrency=args.fresh_concurrency,
    )
    start = time.perf_counter()
    built = evaluate_on_stack(
        ctx,
        "fresh",
        run_dir,
        lambda client: FreshnessEvaluation(client, edits, config, RunDir(run_dir), PrintedProgress()),
    )
    seconds = time.perf_counter() - start
    print(to_markdown(built), flush=True)
    times = built["time_to_fresh"]
    rag_s, ft_s, ratio = times["rag_s"], times["ft_s"], times["ft_over_rag"]
    rag_gain = built["arms"]["rag"]["after_minus_before_new"]
    passed = bool(ratio and ratio > 1 and rag_gain["significant"] and rag_gain["difference"] > 0)
    shown = f"{ratio:.1f}" if ratio else "n/a (an arm never gave a new fact)"
    text = f"time to fresh: rag {rag_s} s vs ft {ft_s} s -> ratio ft/rag {shown} (target > 1)"
    report(NAME, text, passed)
    write_result(
        NAME,
        measured=(
            f"seconds from editing {len(edits)} SQuAD facts in their documents to the first answer that gives a new"
            " fact: re-ingesting the edited documents (rag)"
        ),
        baseline={
            "what": "the same, retraining the closed-book adapter on the edited facts (ft), same run",
            "value": ft_s,
        },
        value=rag_s,
        ratio=ratio,
        target="ratio ft/rag > 1 and rag's share of answers with the new fact up, paired interval above zero",
        passed=passed,
        arms=built["arms"],
        summary=built["summary"],
        facts=built["facts"],
        shapes=built["shapes"],
        config=built["config"],
        run_dir=str(run_dir),
        code_version=version,
        total_seconds=round(seconds, 1),
    )
    return passed
