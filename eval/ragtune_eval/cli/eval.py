"""``ragtune eval``: RAG vs fine-tuning vs both on your QA data (``squad``) or on a classification,
extraction or answer-format task (``task``), or retrieval alone on a BEIR dataset (``beir``), through
the running gateway, with progress bars and a resumable run dir."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ragtune_eval.arms import RAFT_RECIPES, parse_arms
from ragtune_eval.beir import MAX_RESULTS, BeirConfig, BeirEvaluation
from ragtune_eval.beir import to_markdown as beir_markdown
from ragtune_eval.cli.gateway import CliError, api_key, base_url
from ragtune_eval.cli.terminal import fail
from ragtune_eval.client import EvalApiError, GatewayClient, is_alias
from ragtune_eval.dataset import DatasetError, load_beir, load_qa, split_dataset
from ragtune_eval.judge import Judge
from ragtune_eval.markdown_report import to_markdown
from ragtune_eval.public_sets import PUBLIC_SETS, load_task
from ragtune_eval.rundir import RunDir, RunDirError
from ragtune_eval.runner import QaEvalConfig, QaEvaluation, check_promotion
from ragtune_eval.task_data import TASK_KINDS
from ragtune_eval.task_markdown import to_task_markdown
from ragtune_eval.task_runner import TaskEvalConfig, TaskEvaluation
from ragtune_eval.task_split import split_task

eval_app = typer.Typer(help="Measure RAG vs fine-tuning vs both, or retrieval alone, on your data.")
console = Console()


class RichProgress:
    """The runner's progress as rich bars, one per step."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def start(self, key: str, description: str, total: int | None) -> None:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=total, note="")

    def update(self, key: str, completed: int, total: int | None = None, note: str = "") -> None:
        task = self.tasks[key]
        if total:
            self.progress.update(task, total=total)
        self.progress.update(task, completed=completed, note=note)

    def log(self, message: str) -> None:
        self.progress.console.print(message)


def _bars() -> Progress:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console)


def _evaluate(
    run: Callable[[GatewayClient, RichProgress], Awaitable[dict[str, Any]]], run_dir: Path, kept: str
) -> dict[str, Any]:
    """``run`` against the configured gateway with progress bars; a failure is one line (what was
    done is kept in the run directory for a rerun to resume)."""

    async def main() -> dict[str, Any]:
        async with GatewayClient(base_url(), api_key()) as client:
            with _bars() as bars:
                return await run(client, RichProgress(bars))

    try:
        return asyncio.run(main())
    except (CliError, EvalApiError, RunDirError) as error:
        fail(str(error), hint=f"{kept} so far are kept in {run_dir}: rerun the same command to resume")


@eval_app.command()
def squad(
    path: Annotated[Path, typer.Argument(help="SQuAD JSON, or JSONL of {question, answers, context?}")],
    run_dir: Annotated[Path, typer.Option(help="results and state; rerun with the same dir to resume")],
    train: Annotated[int, typer.Option(min=1, help="training questions")] = 300,
    test: Annotated[int, typer.Option(min=1, help="held-out questions")] = 300,
    seed: Annotated[int, typer.Option()] = 0,
    arms: Annotated[str, typer.Option(help="comma-separated: base,rag,ft,rag+ft")] = "base,rag,ft,rag+ft",
    train_sample: Annotated[int, typer.Option(min=0, help="training questions also asked (overfitting)")] = 50,
    top_k: Annotated[int, typer.Option(min=1, max=50)] = 3,
    mode: Annotated[str, typer.Option(help="hybrid, vector or keyword")] = "hybrid",
    epochs: Annotated[int, typer.Option(min=1, max=50, help="epochs of the closed-book adapter")] = 2,
    raft_epochs: Annotated[int, typer.Option(min=1, max=50, help="epochs of the RAFT adapter")] = 1,
    distractors: Annotated[int, typer.Option(min=0, max=20, help="retrieved distractors per RAFT example")] = 4,
    raft_recipe: Annotated[
        str, typer.Option(help="published (reasoning that quotes the gold passage, then the answer) or answer-only")
    ] = "published",
    reasoning_max_tokens: Annotated[int, typer.Option(min=1, help="answer budget of a reasoning adapter")] = 96,
    paraphrases: Annotated[int, typer.Option(min=0, max=4, help="closed-book examples, question rephrased")] = 0,
    promotion_level: Annotated[
        float, typer.Option(min=0.5, max=0.999, help="confidence of the intervals and of a promotion")
    ] = 0.95,
    raft_train: Annotated[int, typer.Option(min=0, help="RAFT examples (a seeded sample of --train); 0 = all")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, max=256, help="closed-book examples per step")] = 8,
    raft_batch_size: Annotated[int, typer.Option(min=1, max=256, help="RAFT examples per step")] = 2,
    max_tokens: Annotated[int, typer.Option(min=1)] = 32,
    concurrency: Annotated[int, typer.Option(min=1, max=64)] = 4,
    promote: Annotated[
        str, typer.Option(help="alias (e.g. ft:latest-good) the adapter takes if it beats the holder")
    ] = "",
    promote_arm: Annotated[str, typer.Option(help="the adapter offered for --promote: ft or rag+ft")] = "ft",
    judge_url: Annotated[
        str,
        typer.Option(
            help="optional LLM judge: an OpenAI-compatible base URL ending in /v1 (key: $RAGTUNE_JUDGE_API_KEY)"
        ),
    ] = "",
    judge_model: Annotated[str, typer.Option(help="the judge's model name (with --judge-url)")] = "",
) -> None:
    """The four-arm QA evaluation: EM/F1, retrieval hit@k, latency, tokens/s and costs per arm."""
    try:
        chosen = parse_arms(arms)
        split = split_dataset(load_qa(path), train, test, seed, train_sample)
        if promote:
            if not is_alias(promote):
                raise ValueError(f"--promote {promote!r}: an alias is 'ft:' and a name without ':'")
            check_promotion(promote_arm, tuple(chosen))
        if raft_recipe not in RAFT_RECIPES:
            raise ValueError(f"--raft-recipe {raft_recipe!r}: choose from {', '.join(RAFT_RECIPES)}")
        if bool(judge_url) != bool(judge_model):
            raise ValueError("--judge-url and --judge-model go together")
    except (ValueError, DatasetError) as error:
        fail(str(error), status=2)
    config = QaEvalConfig(
        dataset=str(path.resolve()),
        train=train,
        test=test,
        seed=seed,
        arms=tuple(chosen),
        train_sample=train_sample,
        top_k=top_k,
        mode=mode,
        epochs=epochs,
        raft_epochs=raft_epochs,
        distractors=distractors,
        raft_recipe=raft_recipe,
        reasoning_max_tokens=reasoning_max_tokens,
        paraphrases=paraphrases,
        promotion_level=promotion_level,
        raft_train=raft_train,
        batch_size=batch_size,
        raft_batch_size=raft_batch_size,
        max_tokens=max_tokens,
        concurrency=concurrency,
    )

    offer = (promote, promote_arm) if promote else None

    async def run(client: GatewayClient, bars: RichProgress) -> dict[str, Any]:
        judge = Judge(judge_url, judge_model) if judge_url else None
        try:
            return await QaEvaluation(client, split, config, RunDir(run_dir), bars, judge).execute(offer)
        finally:
            if judge is not None:
                await judge.aclose()

    built = _evaluate(run, run_dir, "answers")
    console.print(to_markdown(built), markup=False, highlight=False)
    console.print(f"report: {', '.join(built['files'].values())}")


@eval_app.command()
def beir(
    path: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")],
    run_dir: Annotated[Path, typer.Option(help="results and state; rerun with the same dir to resume")],
    split: Annotated[str, typer.Option(help="qrels file to score against")] = "test",
    modes: Annotated[str, typer.Option(help="comma-separated: vector,keyword,hybrid")] = "vector,keyword,hybrid",
    ef_search: Annotated[str, typer.Option(help="comma-separated HNSW ef_search values; empty = default")] = "",
    top_k: Annotated[int, typer.Option(min=10, max=MAX_RESULTS, help="results per query (Recall@k)")] = MAX_RESULTS,
    max_queries: Annotated[int, typer.Option(min=0, help="0 = every judged query")] = 0,
    concurrency: Annotated[int, typer.Option(min=1, max=64)] = 4,
) -> None:
    """Retrieval alone: nDCG@10, Recall@k and MRR per search mode and ef_search."""
    try:
        data = load_beir(path, split)
        chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
        if not chosen or set(chosen) - {"vector", "keyword", "hybrid"}:
            raise ValueError(f"--modes: choose from vector, keyword, hybrid (got {modes!r})")
        efs = tuple(int(v) for v in ef_search.split(",") if v.strip())
    except (ValueError, DatasetError) as error:
        fail(str(error), status=2)
    config = BeirConfig(str(path.resolve()), chosen, efs, top_k, max_queries, concurrency)

    report = _evaluate(
        lambda client, bars: BeirEvaluation(client, data, config, RunDir(run_dir), bars).execute(), run_dir, "results"
    )
    console.print(beir_markdown(report), markup=False, highlight=False)
    console.print(f"report: {run_dir / 'report.json'}, {run_dir / 'report.md'}")


@eval_app.command()
def task(
    path: Annotated[Path, typer.Argument(help="task file (.csv text,label or .jsonl), or a public set's folder")],
    run_dir: Annotated[Path, typer.Option(help="results and state; rerun with the same dir to resume")],
    public: Annotated[str, typer.Option(help=f"PATH is this public set's folder: {', '.join(PUBLIC_SETS)}")] = "",
    test_file: Annotated[Path | None, typer.Option(help="held-out items in a file of their own")] = None,
    task_type: Annotated[str, typer.Option(help=f"auto, {', '.join(TASK_KINDS)}")] = "auto",
    train: Annotated[int, typer.Option(min=1, help="training examples (per label with --per-class)")] = 10,
    test: Annotated[int, typer.Option(min=1, help="held-out items (stratified over labels)")] = 100,
    per_class: Annotated[bool, typer.Option(help="--train and --curve count examples per label")] = False,
    labels: Annotated[int, typer.Option(min=0, help="classification: a seeded choice of labels (0 = all)")] = 0,
    seed: Annotated[int, typer.Option()] = 0,
    arms: Annotated[str, typer.Option(help="comma-separated: base,rag,ft,rag+ft")] = "base,rag,ft,rag+ft",
    train_sample: Annotated[int, typer.Option(min=0, help="training examples also answered (overfitting)")] = 40,
    shots: Annotated[int, typer.Option(min=1, max=24, help="retrieved demonstrations of the few-shot arms")] = 4,
    mode: Annotated[str, typer.Option(help="hybrid, vector or keyword")] = "hybrid",
    epochs: Annotated[int, typer.Option(min=1, max=50)] = 3,
    batch_size: Annotated[int, typer.Option(min=1, max=256)] = 8,
    learning_rate_multiplier: Annotated[float, typer.Option(min=0, help="0 = the trainer's default")] = 0.0,
    lora_rank: Annotated[int, typer.Option(min=0, help="0 = the trainer's default")] = 0,
    max_seq_length: Annotated[int, typer.Option(min=64)] = 1024,
    max_tokens: Annotated[int, typer.Option(min=0, help="answer length cap; 0 = the task's default")] = 0,
    answer_mark: Annotated[str, typer.Option(help="answer tasks: what precedes the final answer")] = "####",
    curve: Annotated[str, typer.Option(help="learning curve: smaller training sizes, e.g. 1,2,5")] = "",
    level: Annotated[float, typer.Option(min=0.5, max=0.999, help="confidence of the intervals")] = 0.95,
    concurrency: Annotated[int, typer.Option(min=1, max=64)] = 4,
) -> None:
    """Four arms on a task: accuracy / macro-F1 (classification), field F1 (extraction) or answer
    accuracy, with intervals, latency, prompt tokens, costs and a learning curve."""
    try:
        chosen = parse_arms(arms)
        sizes = tuple(int(v) for v in curve.split(",") if v.strip())
        if any(size < 1 for size in sizes):
            raise ValueError(f"--curve {curve!r}: sizes are positive integers")
        if task_type not in ("auto", *TASK_KINDS):
            raise ValueError(f"--task-type {task_type!r}: choose from auto, {', '.join(TASK_KINDS)}")
        data = load_task(path, public, task_type, test_file)
        split = split_task(data, train, test, seed, train_sample, per_class, labels)
    except (ValueError, DatasetError) as error:
        fail(str(error), status=2)
    config = TaskEvalConfig(
        dataset=public or str(path.resolve()),
        kind=data.kind,
        train=train,
        test=test,
        per_class=per_class,
        labels=labels,
        seed=seed,
        arms=tuple(chosen),
        train_sample=train_sample,
        shots=shots,
        mode=mode,
        max_tokens=max_tokens,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate_multiplier=learning_rate_multiplier,
        lora_rank=lora_rank,
        max_seq_length=max_seq_length,
        answer_mark=answer_mark,
        curve=sizes,
        promotion_level=level,
        concurrency=concurrency,
    )

    async def run(client: GatewayClient, bars: RichProgress) -> dict[str, Any]:
        return await TaskEvaluation(client, data, split, config, RunDir(run_dir), bars).execute()

    built = _evaluate(run, run_dir, "answers")
    console.print(to_task_markdown(built), markup=False, highlight=False)
    console.print(f"report: {', '.join(built['files'].values())}")
