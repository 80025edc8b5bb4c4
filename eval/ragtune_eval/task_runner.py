"""The task evaluation (classification, extraction, answer format): four arms on the same held-out
items, through the gateway's REST API only.

- ``base``: the base model, zero-shot, with the task's instructions (the label set, the fields or
  the answer format: ``ragtune_eval.task_prompts``);
- ``rag``: retrieval-augmented few-shot: the training examples are uploaded as documents of one
  vector store (each with its position in the nested training order as an attribute), the input is
  searched, and the ``shots`` most similar labelled examples become demonstrations in the prompt;
- ``ft``: a LoRA adapter trained through the fine-tuning API on the training examples in the
  zero-shot prompt; ``rag+ft``: an adapter trained on the few-shot prompt (each example's
  demonstrations retrieved as at answer time, never the example itself), asked with retrieval.

Optionally a learning curve: ``ft`` and ``rag`` again at smaller nested training sets (a search
filter on the position keeps the few-shot arm inside the subset). Every arm's held-out answers are
one run of one eval in the OpenAI Evals dialect (``ragtune_eval.evals_dialect``), so the gateway's
comparison, promotion and console see them too. Every step is kept in the :class:`RunStore`, so a
rerun resumes; the report is ``ragtune_eval.task_report``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

from ragtune_eval import task_report
from ragtune_eval.adapters import ensure_adapter, training_job, upload_lines
from ragtune_eval.answering import answer_missing
from ragtune_eval.arms import ARMS
from ragtune_eval.client import GatewayClient
from ragtune_eval.evals_dialect import ensure_eval, run_items, sample_of
from ragtune_eval.indexing import Progress, ensure_store
from ragtune_eval.rundir import RunStore
from ragtune_eval.runner import NoProgress
from ragtune_eval.scoring import unique_in_order
from ragtune_eval.task_data import TaskData, TaskItem
from ragtune_eval.task_metrics import score_answer, score_classification, score_extraction
from ragtune_eval.task_prompts import DEFAULT_MARK, instructions, messages, training_line
from ragtune_eval.task_split import TaskSplit

DEFAULT_MAX_TOKENS = {"classification": 24, "extraction": 96, "answer": 256}
CURVE_ARMS = ("rag", "ft")
ORDER = "order"  # the attribute holding a training example's position in the nested order


@dataclass(frozen=True)
class TaskEvalConfig:
    dataset: str
    kind: str
    train: int  # training examples (per label with ``per_class``)
    test: int
    per_class: bool = False
    labels: int = 0  # classification: a seeded choice of this many labels (0 = all)
    seed: int = 0
    arms: tuple[str, ...] = tuple(ARMS)
    train_sample: int = 40  # training examples also answered: the train vs held-out gap
    shots: int = 4  # demonstrations retrieved for the few-shot arms
    mode: str = "hybrid"
    max_tokens: int = 0  # 0 = the task's default (DEFAULT_MAX_TOKENS)
    epochs: int = 3
    batch_size: int = 8
    learning_rate_multiplier: float = 0.0  # 0 = the trainer's default
    lora_rank: int = 0  # 0 = the trainer's default
    max_seq_length: int = 1024
    answer_mark: str = DEFAULT_MARK  # answer tasks: what precedes the final answer
    curve: tuple[int, ...] = ()  # smaller training-set sizes, in the unit of ``train``
    promotion_level: float = 0.95  # the confidence of every interval
    resamples: int = 2000
    concurrency: int = 4

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "arms": list(self.arms), "curve": list(self.curve)}

    @property
    def answer_budget(self) -> int:
        return self.max_tokens or DEFAULT_MAX_TOKENS[self.kind]


def demos_ids(demonstrations: list[TaskItem]) -> list[str]:
    return [demo.id for demo in demonstrations]


class TaskEvaluation:
    def __init__(
        self,
        client: GatewayClient,
        data: TaskData,
        split: TaskSplit,
        config: TaskEvalConfig,
        run: RunStore,
        progress: Progress | None = None,
    ) -> None:
        if config.kind != data.kind:
            raise ValueError(f"the config says {config.kind}, the data is {data.kind}")
        self.client, self.data, self.split, self.config, self.run = client, data, split, config, run
        self.progress = progress or NoProgress()
        self.limit = asyncio.Semaphore(config.concurrency)
        self.labels = split.labels or data.labels
        self.system = instructions(data, self.labels, config.answer_mark)
        self.by_document: dict[str, TaskItem] = {}

    def curve_sizes(self) -> list[tuple[int, int]]:
        """(size in the unit of ``train``, training items) of each learning-curve point below the full set."""
        unit = len(self.labels) if self.config.per_class else 1
        return [(size, size * unit) for size in sorted(set(self.config.curve)) if 0 < size < self.config.train]

    async def execute(self) -> dict[str, Any]:
        """Run (or resume) every arm and the learning curve, then write the report."""
        await self.run.check_config(self.config.as_dict())
        state = self.run.state
        state.setdefault("base_model", await self.client.base_model())
        await self.run.save_state()
        arms = [ARMS[name] for name in self.config.arms]
        if any(arm.retrieval for arm in arms) or self.curve_sizes():
            await self.ensure_example_store()
        full = len(self.split.train)
        for arm in arms:
            model = await self.adapter(arm.name, full, arm.retrieval) if arm.training else state["base_model"]
            await self.answer_all(arm.name, model, arm.retrieval, full, train_sample=True)
        for size, items in self.curve_sizes():
            model = await self.adapter(f"ft@{size}", items, retrieval=False)
            await self.answer_all(f"ft@{size}", model, False, items, train_sample=False)
            await self.answer_all(f"rag@{size}", state["base_model"], True, items, train_sample=False)
        return await self.report()

    async def report(self) -> dict[str, Any]:
        """Build and write the report from the answers stored so far (asks nothing)."""
        await self.run.check_config(self.config.as_dict())
        state = self.run.state
        arms = [ARMS[name] for name in self.config.arms]
        results = {arm.name: self.rescored(await self.run.results(arm.name)) for arm in arms}
        curve = {
            size: {arm: self.rescored(await self.run.results(f"{arm}@{size}")) for arm in CURVE_ARMS}
            for size, _ in self.curve_sizes()
        }
        built = await asyncio.to_thread(
            task_report.build_task_report, self.config.as_dict(), state, results, curve, self.described()
        )
        await asyncio.to_thread(task_report.write_task_report, built, self.run.path)
        return built

    def described(self) -> dict[str, Any]:
        """What the report says of the task and each arm's prompt and recipe."""
        cfg, n = self.config, len(self.split.train)
        lora = f"LoRA rank {cfg.lora_rank}" if cfg.lora_rank else "LoRA (the trainer's default rank)"
        rate = f", learning-rate multiplier {cfg.learning_rate_multiplier}" if cfg.learning_rate_multiplier else ""
        trained = f"{lora}, {cfg.epochs} epoch(s), batch {cfg.batch_size}{rate}, on the {n} training examples"
        store = f"a vector store of the {n} training examples ({cfg.mode} search), the {cfg.shots} nearest shown"
        return {
            "instructions": self.system,
            "labels": list(self.labels),
            "schema": self.data.schema,
            "train_items": n,
            "test_items": len(self.split.test),
            "train_targets": {item.id: str(item.target) for item in self.split.train} if self.labels else {},
            "prompts": {
                "base": "the instructions, zero-shot",
                "rag": f"the instructions, then the {cfg.shots} most similar training examples with their outputs",
                "ft": "the instructions, zero-shot (as the adapter was trained)",
                "rag+ft": f"the instructions and {cfg.shots} retrieved examples (as the adapter was trained)",
            },
            "recipes": {
                "base": "none",
                "rag": store,
                "ft": f"{trained} in the zero-shot prompt",
                "rag+ft": f"{trained} in the few-shot prompt (never retrieving the example itself); {store}",
            },
        }

    # -- the store of labelled examples -----------------------------------------------------------

    async def ensure_example_store(self) -> None:
        train = self.split.train
        attributes: dict[str, dict[str, Any]] = {item.id: {ORDER: position} for position, item in enumerate(train)}
        if self.data.kind == "classification":
            for item in train:
                attributes[item.id]["label"] = str(item.target)[:512]
        texts = {item.id: item.input for item in train}
        store = await ensure_store(self.client, self.run, texts, self.limit, self.progress, attributes)
        self.by_document = {store["files"][item.id]: item for item in train}

    async def demonstrations(self, item: TaskItem, size: int) -> tuple[list[TaskItem], float]:
        """The ``shots`` training examples among the first ``size`` most similar to ``item`` (never
        ``item`` itself), the most similar last; and the seconds the search took."""
        filters = {"type": "lt", "key": ORDER, "value": size} if size < len(self.split.train) else None
        start = time.perf_counter()
        hits = await self.client.search(
            self.run.state["store"]["id"], item.input, min(50, 2 * self.config.shots + 2), self.config.mode,
            filters=filters,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        found = [self.by_document[d] for d in unique_in_order(h["document_id"] for h in hits) if d in self.by_document]
        chosen = [demo for demo in found if demo.id != item.id][: self.config.shots]
        return chosen[::-1], seconds

    # -- adapters ---------------------------------------------------------------------------------

    async def adapter(self, key: str, size: int, retrieval: bool) -> str:
        """The adapter trained on the first ``size`` training examples, in the prompt of its arm."""
        items = self.split.subset(size)

        async def training_file() -> tuple[str, int]:
            if retrieval:

                async def line(item: TaskItem) -> str:
                    async with self.limit:
                        demos, _ = await self.demonstrations(item, size)
                    return training_line(self.system, item, demos)

                lines = list(await asyncio.gather(*(line(item) for item in items)))
            else:
                lines = [training_line(self.system, item) for item in items]
            return await upload_lines(self.client, key, lines), len(lines)

        cfg = self.config
        job = training_job(
            cfg.seed, cfg.epochs, cfg.batch_size, cfg.learning_rate_multiplier, cfg.max_seq_length, cfg.lora_rank
        )
        return await ensure_adapter(self.client, self.run, key, training_file, job, self.progress)

    # -- answering --------------------------------------------------------------------------------

    async def answer_all(self, results: str, model: str, retrieval: bool, size: int, train_sample: bool) -> None:
        """The held-out items as one run of the eval (:meth:`answer_held_out`); the training sample,
        a diagnostic of the gap between training and held-out items, through chat completions."""
        await self.answer_held_out(results, model, retrieval, size)
        if not train_sample:
            return

        async def answer(split: str, item: TaskItem) -> dict[str, Any]:
            demos, search_s = await self.demonstrations(item, size) if retrieval else ([], 0.0)
            result = await self.client.chat(model, messages(self.system, item, demos), self.config.answer_budget)
            usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens}
            return self.row(split, item, result.text, demos_ids(demos), search_s, result.latency_s, usage)

        wanted = [("train", item) for item in self.split.train_sample]
        await answer_missing(self.run, results, wanted, answer, self.limit, self.progress)

    async def answer_held_out(self, results: str, model: str, retrieval: bool, size: int) -> None:
        """Every held-out item answered by ``model`` as the eval run ``results`` (see
        ``ragtune_eval.evals_dialect``): the harness searches the demonstrations and builds each
        item's messages, the gateway samples and grades them as a leased job; the answers are then
        scored with the task's metrics into the run directory."""
        done = await self.run.done(results)
        if all(("test", item.id) in done for item in self.split.test):
            return
        metadata = {"dataset": self.config.dataset[:512], "kind": self.config.kind}
        eval_id = await ensure_eval(self.client, self.run, f"ragtune task: {self.config.dataset}"[:256], metadata)
        prepared: list[dict[str, Any]] = []
        if results not in self.run.state.get("eval_runs", {}):

            async def prepare(item: TaskItem) -> dict[str, Any]:
                async with self.limit:
                    demos, search_s = await self.demonstrations(item, size) if retrieval else ([], 0.0)
                return {
                    "id": item.id,
                    "reference": item.output(),
                    "messages": messages(self.system, item, demos),
                    "demonstrations": demos_ids(demos),
                    "search_s": round(search_s, 4),
                }

            prepared = list(await asyncio.gather(*(prepare(item) for item in self.split.test)))
        budget = self.config.answer_budget
        found = await run_items(self.client, self.run, eval_id, results, model, prepared, budget, self.progress)
        by_id = {item.id: item for item in self.split.test}
        for output in found:
            source = output["datasource_item"]
            item = by_id.get(str(source.get("id")))
            if item is None or ("test", item.id) in done:
                continue
            text, sample = sample_of(output)
            search_s = float(source.get("search_s") or 0.0)
            row = self.row(
                "test", item, text, list(source.get("demonstrations") or []), search_s,
                float(sample.get("latency_s") or 0.0), sample.get("usage") or {},
            )  # fmt: skip
            row["eval_run_id"] = output["run_id"]
            if output["status"] == "error":
                row["error"] = (sample.get("error") or {}).get("message") or "the model could not answer"
            await self.run.append_result(results, row)
            done.add(("test", item.id))

    def row(
        self,
        split: str,
        item: TaskItem,
        text: str,
        demonstrations: list[str],
        search_s: float,
        answer_s: float,
        usage: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "id": item.id,
            "split": split,
            "input": item.input,
            "gold": item.target,
            "prediction": text,
            **self.score(text, item),
            "demonstrations": demonstrations,
            "latency_s": round(search_s + answer_s, 4),  # what a user waits: search + answer
            "search_s": round(search_s, 4),
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
        }

    def rescored(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The stored answers scored by the current metrics (the same answers: a metric fixed after a
        run applies to it when its report is rebuilt)."""
        items = {item.id: item for item in (*self.split.test, *self.split.train_sample)}
        return [
            {**row, **self.score(row["prediction"], items[row["id"]])} if row["id"] in items else row for row in rows
        ]

    def score(self, prediction: str, item: TaskItem) -> dict[str, Any]:
        if self.data.kind == "classification":
            return score_classification(prediction, item.target, self.labels)
        if self.data.kind == "extraction":
            return score_extraction(prediction, item.target, self.data.schema)
        return score_answer(prediction, item.target, self.config.answer_mark)
