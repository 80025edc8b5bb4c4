"""Freshness: how long after a fact changes in the documents each arm answers with the new fact.

Through the gateway's REST API, as a user would: the passages of a knowledge set go into a vector
store (the ``rag`` arm) and a closed-book LoRA adapter learns question -> answer (the ``ft`` arm);
both are asked. Then the gold facts are edited (:mod:`ragtune_eval.freshness_edit`) and each arm is
refreshed the way it can be: ``rag`` re-ingests the edited documents (each old file deleted from the
store, the edited one uploaded and added), ``ft`` retrains on the edited facts and is served. Each
refresh is timed from the moment it is handed the edited documents to the store (or adapter) ready,
the first answer and the first answer that gives the new fact; the two refreshes run one after the
other, so they never compete for the CPU. ``rag+ft`` is asked too: the old adapter over the refreshed
store (does a memorised old answer override the new passage?) and the retrained adapter over it.

Before the edit the system is asked once; editing the documents changes nothing it serves until a
refresh, so those answers are also its stale answers, scored on the new gold. The steps before the
edit resume from the run's state; the timed part after the edit is all or nothing: a rerun of an
interrupted one starts it again as a new attempt (its results under new names), re-ingesting and
retraining for real.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ragtune_eval import freshness_report
from ragtune_eval.adapters import ensure_adapter, training_job, upload_lines
from ragtune_eval.answering import answer_missing
from ragtune_eval.arms import closed_book_lines, question_messages
from ragtune_eval.client import EvalApiError, GatewayClient
from ragtune_eval.freshness_edit import FactEdit, mentions
from ragtune_eval.indexing import Progress, ensure_store
from ragtune_eval.rundir import RunDirError, RunStore
from ragtune_eval.runner import NoProgress
from ragtune_eval.tasks import run_each

WAIT_RETRIES = 20  # status reads of a training job the gateway answered 502/503/504 (a loaded trainer)
WAIT_PAUSE_S = 5.0  # seconds between those waits


@dataclass(frozen=True)
class FreshnessConfig:
    dataset: str
    items: int
    seed: int = 0
    top_k: int = 3
    mode: str = "hybrid"
    max_tokens: int = 32
    epochs: int = 10  # the closed-book adapter must learn the very facts it is asked: enough passes to hold them
    batch_size: int = 4
    learning_rate_multiplier: float = 5.0
    lora_rank: int = 0  # 0 = the trainer's default
    max_seq_length: int = 256
    rag_ft: bool = True  # also ask rag+ft (the old and the retrained adapter over the refreshed store)
    level: float = 0.95
    resamples: int = 2000
    concurrency: int = 4

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Clock:
    """Seconds since a refresh was handed the edited documents."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC).isoformat(timespec="milliseconds")
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 3)


class FreshnessEvaluation:
    def __init__(
        self,
        client: GatewayClient,
        edits: list[FactEdit],
        config: FreshnessConfig,
        run: RunStore,
        progress: Progress | None = None,
    ) -> None:
        self.client, self.edits, self.config, self.run = client, edits, config, run
        self.progress = progress or NoProgress()
        self.limit = asyncio.Semaphore(config.concurrency)

    async def execute(self) -> dict[str, Any]:
        """Run (or resume) the measurement; the report (also written to the run's folder)."""
        edits = json.loads(json.dumps([asdict(e) for e in self.edits]))  # as the config file holds them
        await self.run.check_config({**self.config.as_dict(), "edits": edits})
        state = self.run.state
        state.setdefault("base_model", await self.client.base_model())
        await self.run.save_state()
        await self.before()
        after = state.setdefault("after", {"attempt": 0})
        if not after.get("complete"):
            after.update(attempt=after["attempt"] + 1, started_at=datetime.now(UTC).isoformat(timespec="seconds"))
            await self.run.save_state()
            await self.refresh(after["attempt"])
            after["complete"] = True
            await self.run.save_state()
        names = freshness_report.result_names(after["attempt"], self.config.rag_ft)
        results = {name: await self.run.results(name) for name in set(names.values())}
        built = await asyncio.to_thread(
            freshness_report.build_report, self.config.as_dict(), state, self.edits, results, names
        )
        await asyncio.to_thread(freshness_report.write_all, built, self.run.path)
        return built

    # -- before the edit ----------------------------------------------------------------------------

    async def before(self) -> None:
        """The store of the original passages, the adapter trained on the original answers, and
        every arm asked (resumes what is missing)."""
        texts = {e.old_item.context_id: e.old_context for e in self.edits}
        await ensure_store(self.client, self.run, texts, self.limit, self.progress)
        store = self.run.state["store"]
        store.setdefault("current", dict(store["files"]))  # context id -> the file the store holds for it
        if store["current"] != store["files"] and len(await self.run.results("rag-before")) < len(self.edits):
            raise RunDirError(f"{self.run.path}: the store was edited before every question was asked: use a new run")
        adapter = await self.train("ft", old=True)
        base = self.run.state["base_model"]
        items = [e.old_item for e in self.edits]
        await self.ask("rag-before", base, True, items)
        await self.ask("ft-before", adapter, False, items)
        if self.config.rag_ft:
            await self.ask("rag+ft-before", adapter, True, items)

    # -- after the edit -----------------------------------------------------------------------------

    async def refresh(self, attempt: int) -> None:
        items = [e.new_item for e in self.edits]
        refreshes = self.run.state.setdefault("refreshes", {})
        record: dict[str, dict[str, Any]] = {}
        refreshes[str(attempt)] = record

        clock = Clock()
        record["rag"] = {"edited_at": clock.at, **await self.reingest(clock)}
        await self.run.save_state()
        names = freshness_report.result_names(attempt, self.config.rag_ft)
        await self.ask(names["rag"], self.run.state["base_model"], True, items, clock)
        record["rag"].update(await self.answer_times(names["rag"]))
        await self.run.save_state()
        old_adapter = self.run.state["jobs"]["ft"]["model"]
        if self.config.rag_ft:
            await self.ask(names["rag+ft old adapter"], old_adapter, True, items)

        clock = Clock()
        record["ft"] = {"edited_at": clock.at}
        adapter = await self.train(f"ft-fresh-{attempt}", old=False)
        record["ft"].update(ready_s=clock.seconds(), job=f"ft-fresh-{attempt}")
        await self.run.save_state()
        await self.ask(names["ft"], adapter, False, items, clock)
        record["ft"].update(await self.answer_times(names["ft"]))
        await self.run.save_state()
        if self.config.rag_ft:
            await self.ask(names["rag+ft retrained"], adapter, True, items)

    async def reingest(self, clock: Clock) -> dict[str, Any]:
        """Each edited document replaces its old version in the store: the edited text uploaded as
        a new file, the old file deleted from the store, the new one added (chunked and embedded).
        The store is ready when every document is replaced."""
        store = self.run.state["store"]
        uploaded: dict[str, str] = {}

        async def upload(edit: FactEdit) -> None:
            key = edit.old_item.context_id
            async with self.limit:
                uploaded[key] = await self.client.upload(f"{key}-edited.txt", edit.new_context.encode(), "assistants")

        await run_each(self.edits, upload)
        uploaded_s = clock.seconds()

        async def replace(edit: FactEdit) -> None:
            key = edit.old_item.context_id
            async with self.limit:
                await self.client.call("DELETE", f"/v1/vector_stores/{store['id']}/files/{store['current'][key]}")
                await self.client.add_to_store(store["id"], uploaded[key])
            store["current"][key] = uploaded[key]

        self.progress.log(f"re-ingesting {len(self.edits)} edited documents into {store['id']}")
        try:
            await run_each(self.edits, replace)
        finally:
            await self.run.save_state()
        ready_s = clock.seconds()
        found = await self.client.get_store(store["id"])
        self.progress.log(f"store ready {ready_s:.1f}s after the edit ({found['file_counts']['total']} documents)")
        return {"upload_s": uploaded_s, "ready_s": ready_s, "documents": found["file_counts"]["total"]}

    async def answer_times(self, results: str) -> dict[str, Any]:
        """When the refreshed arm's answers came, in seconds after the edit: the first, the first
        that gives the new fact, the last."""
        rows = await self.run.results(results)
        new = {e.id: e.new_answer for e in self.edits}
        done = [r["done_s"] for r in rows]
        right = [r["done_s"] for r in rows if mentions(r["prediction"], new[r["id"]])]
        return {
            "first_answer_s": min(done, default=None),
            "first_correct_s": min(right, default=None),
            "all_answered_s": max(done, default=None),
        }

    # -- adapters and answers -----------------------------------------------------------------------

    async def train(self, key: str, old: bool) -> str:
        """The closed-book adapter on the original (``old``) or the edited answers, the QA
        evaluation's recipe (:func:`ragtune_eval.arms.closed_book_lines`)."""
        cfg = self.config

        async def training_file() -> tuple[str, int]:
            items = [e.old_item if old else e.new_item for e in self.edits]
            lines = [line for item in items for line in closed_book_lines(item)]
            return await upload_lines(self.client, key, lines), len(lines)

        job = training_job(
            cfg.seed, cfg.epochs, cfg.batch_size, cfg.learning_rate_multiplier, cfg.max_seq_length, cfg.lora_rank
        )
        for attempt in range(WAIT_RETRIES + 1):
            try:
                return await ensure_adapter(self.client, self.run, key, training_file, job, self.progress)
            except EvalApiError as exc:
                # a busy trainer may not answer a status read in time: wait for the same job again
                if exc.status not in (502, 503, 504) or attempt == WAIT_RETRIES:
                    raise
                self.progress.log(f"{key}: {exc}; waiting for the job again")
                await asyncio.sleep(WAIT_PAUSE_S)
        raise AssertionError("unreachable")

    async def ask(
        self, results: str, model: str, retrieval: bool, items: list[Any], clock: Clock | None = None
    ) -> None:
        """Every item asked of ``model`` (with the store when ``retrieval``), under ``results``;
        with a ``clock``, each row holds when its answer came (``done_s``)."""
        cfg = self.config
        rag = {"vector_store_ids": [self.run.state["store"]["id"]], "top_k": cfg.top_k, "mode": cfg.mode}

        async def answer(split: str, item: Any) -> dict[str, Any]:
            result = await self.client.chat(model, question_messages(item), cfg.max_tokens, rag if retrieval else None)
            row: dict[str, Any] = {
                "id": item.id,
                "split": split,
                "model": model,
                "prediction": result.text,
                "latency_s": round(result.latency_s, 4),
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
            }
            if clock is not None:
                row["done_s"] = clock.seconds()
            if retrieval:
                row["passages"] = list(result.passages)
            return row

        wanted: list[tuple[str, Any]] = [("test", item) for item in items]
        await answer_missing(self.run, results, wanted, answer, self.limit, self.progress)
