"""The QA evaluation run: build the vector store from the dataset's contexts, train the adapters
the arms need, ask every held-out question (and a sample of training questions) in every arm, and
score the answers. Each step records what it did in the run directory, so a rerun resumes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from ragtune_eval import report
from ragtune_eval.adapters import ensure_adapter, upload_lines
from ragtune_eval.answering import answer_missing
from ragtune_eval.arms import (
    ARMS,
    CHARS_PER_TOKEN,
    INSTRUCTION,
    Arm,
    Passage,
    closed_book_lines,
    final_answer,
    no_gold_ids,
    question_messages,
    raft_line,
    short_answer,
)
from ragtune_eval.client import GatewayClient
from ragtune_eval.dataset import QAItem, Split
from ragtune_eval.indexing import Progress, ensure_store
from ragtune_eval.judge import Judge, judge_arm, summarize
from ragtune_eval.rundir import RunStore
from ragtune_eval.scoring import best_over_answers, hit_at_k, normalize_answer, recall_at_k
from ragtune_eval.significance import compare_paired

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QaEvalConfig:
    dataset: str
    train: int
    test: int
    seed: int = 0
    arms: tuple[str, ...] = tuple(ARMS)
    train_sample: int = 50
    top_k: int = 3
    mode: str = "hybrid"
    max_tokens: int = 32
    epochs: int = 2
    raft_epochs: int = 1  # RAFT examples are ~8x longer than closed-book ones: one pass keeps the run in budget
    raft_train: int = 0  # RAFT examples: a seeded sample of this many training questions; 0 = all of them
    batch_size: int = 8  # closed-book examples per step: per-step overhead dominates short examples on CPU
    raft_batch_size: int = 2  # RAFT examples are ~5x longer: larger batches run the trainer out of memory
    lora_rank: int = 0  # 0 = the trainer's default
    max_seq_length: int = 1024
    distractors: int = 4  # with the gold passage: the published RAFT recipe's one gold + four distractors
    no_gold_fraction: float = 0.2  # RAFT's 1-P: examples trained without their gold passage
    raft_recipe: str = "published"  # or "answer-only" (see ragtune_eval.arms)
    reasoning_max_tokens: int = 96  # answer budget of an adapter trained to reason before answering
    paraphrases: int = 0  # closed-book examples repeated with the question rephrased (0-4)
    promotion_level: float = 0.95  # confidence a promotion's paired improvement must reach
    resamples: int = 2000  # bootstrap resamples of every interval
    concurrency: int = 4
    instruction: str = field(default=INSTRUCTION)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "arms": list(self.arms)}


def check_promotion(arm: str, arms: tuple[str, ...]) -> None:
    if arm not in arms or not ARMS[arm].training:
        trained = [a for a in arms if ARMS[a].training]
        raise ValueError(f"promote: arm {arm!r} is not a fine-tuned arm of this run (choose from {trained})")


class NoProgress:
    def start(self, key: str, description: str, total: int | None) -> None:
        pass

    def update(self, key: str, completed: int, total: int | None = None, note: str = "") -> None:
        pass

    def log(self, message: str) -> None:
        log.info("%s", message)


class QaEvaluation:
    def __init__(
        self,
        client: GatewayClient,
        split: Split,
        config: QaEvalConfig,
        run: RunStore,
        progress: Progress | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.client, self.split, self.config, self.run = client, split, config, run
        self.progress = progress or NoProgress()
        self.judge = judge  # optional LLM judge of the retrieval arms' answers (off by default)
        self.limit = asyncio.Semaphore(config.concurrency)

    async def execute(self, promote: tuple[str, str] | None = None) -> dict[str, Any]:
        """Run (or resume) every arm and write the report; ``promote`` = (alias, arm): then offer
        that arm's adapter for the alias (see ``promote``)."""
        if promote is not None:
            check_promotion(promote[1], self.config.arms)
        await self.run.check_config(self.config.as_dict())
        state = self.run.state
        state.setdefault("base_model", await self.client.base_model())
        await self.run.save_state()
        arms = [ARMS[name] for name in self.config.arms]
        if any(arm.retrieval or arm.training == "raft" for arm in arms):
            await self.ensure_store()
        for arm in arms:
            model = await self.ensure_adapter(arm) if arm.training else state["base_model"]
            await self.answer_all(arm, model)
        judged = {}
        if self.judge is not None:
            for arm in arms:
                if arm.retrieval:
                    verdicts = await judge_arm(self.judge, self.run, arm.name, self.split, self.limit, self.progress)
                    judged[arm.name] = summarize(verdicts, self.judge.model)
        results = {arm.name: await self.run.results(arm.name) for arm in arms}
        # the bootstrap intervals and the files are CPU work: off the event loop (a gateway serves on it)
        built = await asyncio.to_thread(
            report.build_report, self.config.as_dict(), state, results, self.recipes(), judged
        )
        if promote is not None:
            built["promotion"] = await self.promote(*promote)
        await asyncio.to_thread(report.write_all, built, self.run.path)
        return built

    # -- the vector store -------------------------------------------------------------------------

    async def ensure_store(self) -> None:
        await ensure_store(self.client, self.run, self.split.contexts(), self.limit, self.progress)

    def gold_document(self, item: QAItem) -> str | None:
        store = self.run.state.get("store") or {}
        return store.get("files", {}).get(item.context_id) if item.context.strip() else None

    # -- adapters ---------------------------------------------------------------------------------

    async def training_file(self, arm: Arm) -> tuple[str, int]:
        """(file id, examples)."""
        if arm.training == "closed_book":
            lines = [line for item in self.split.train for line in closed_book_lines(item, self.config.paraphrases)]
        else:
            lines = await self.raft_lines()
        return await upload_lines(self.client, arm.name, lines), len(lines)

    async def raft_lines(self) -> list[str]:
        cfg, store_id = self.config, self.run.state["store"]["id"]
        items = [item for item in self.split.train if item.context.strip()]
        if 0 < cfg.raft_train < len(items):
            chosen = {item.id for item in random.Random(f"raft:{cfg.seed}").sample(items, cfg.raft_train)}
            items = [item for item in items if item.id in chosen]
        without_gold = no_gold_ids(items, cfg.no_gold_fraction, cfg.seed)
        reserve = 260 if cfg.raft_recipe == "published" else 160  # the instruction, question and answer
        budget = int((cfg.max_seq_length - reserve) * CHARS_PER_TOKEN)

        async def one(item: QAItem) -> str:
            async with self.limit:
                hits = await self.client.search(store_id, item.question, cfg.distractors + 4, cfg.mode)
            retrieved = [Passage(h["document_id"], h["filename"], h["content"][0]["text"]) for h in hits]
            gold = Passage(self.gold_document(item) or "", f"{item.context_id}.txt", item.context)
            with_gold = item.id not in without_gold
            return raft_line(item, gold, retrieved, cfg.distractors, with_gold, cfg.seed, budget, cfg.raft_recipe)

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def ensure_adapter(self, arm: Arm) -> str:
        raft = arm.training == "raft"
        job: dict[str, Any] = {
            "seed": self.config.seed,
            "hyperparameters": {
                "n_epochs": self.config.raft_epochs if raft else self.config.epochs,
                "batch_size": self.config.raft_batch_size if raft else self.config.batch_size,
            },
            "validation_fraction": 0,
            "max_seq_length": self.config.max_seq_length,
        }
        if self.config.lora_rank:
            job["lora"] = {"r": self.config.lora_rank}
        return await ensure_adapter(
            self.client, self.run, arm.name, lambda: self.training_file(arm), job, self.progress
        )

    # -- answering --------------------------------------------------------------------------------

    async def answer_all(self, arm: Arm, model: str, results: str | None = None, train_sample: bool = True) -> None:
        """Ask the held-out questions (and the training sample) of ``arm`` with ``model``; the
        answers go to the results named ``results`` (default: the arm's)."""
        wanted = [("test", item) for item in self.split.test]
        if train_sample:
            wanted += [("train", item) for item in self.split.train_sample]

        async def answer(split: str, item: QAItem) -> dict[str, Any]:
            return await self.answer(arm, model, split, item)

        await answer_missing(self.run, results or arm.name, wanted, answer, self.limit, self.progress)

    # -- promotion --------------------------------------------------------------------------------

    def recipes(self) -> dict[str, str]:
        """How each fine-tuned arm's adapter was trained, for the report."""
        out = {}
        for name in self.config.arms:
            if ARMS[name].training == "closed_book":
                out[name] = f"closed-book QA, {1 + self.config.paraphrases} phrasing(s) per question"
            elif ARMS[name].training == "raft":
                out[name] = (
                    f"RAFT {self.config.raft_recipe}: 1 gold + {self.config.distractors} distractors, "
                    f"{self.config.no_gold_fraction:.0%} without the gold passage"
                )
        return out

    def answer_budget(self, arm: Arm) -> int:
        reasons = arm.training == "raft" and self.config.raft_recipe == "published"
        return self.config.reasoning_max_tokens if reasons else self.config.max_tokens

    async def held_out(self, results: str) -> dict[str, float]:
        """Token F1 per held-out question (by id)."""
        return {r["id"]: r["f1"] for r in await self.run.results(results) if r["split"] == "test"}

    async def held_out_f1(self, results: str) -> float:
        """Mean token F1 (percent) on the held-out questions, as in the report."""
        return report.percent(list((await self.held_out(results)).values())) or 0.0

    async def promote(self, alias: str, arm_name: str) -> dict[str, Any]:
        """Offer ``arm_name``'s adapter for ``alias``. The alias's current holder (another adapter)
        answers the same held-out questions under the same arm (retrieval or not), so both scores
        are measured alike; the gateway moves the alias only if the candidate's F1 is higher, and
        records the decision either way. The decision is kept in the run: a rerun does not retake it."""
        key = f"{alias}|{arm_name}"
        decisions = self.run.state.setdefault("promotions", {})
        if key in decisions:
            return dict(decisions[key])
        arm = ARMS[arm_name]
        candidate = self.run.state["jobs"][arm_name]["model"]
        score = await self.held_out_f1(arm_name)
        holder = await self.client.get_alias(alias)
        holder_model = holder["model"] if holder else None
        holder_score = None
        comparison = None
        if holder_model and holder_model != candidate:
            results = f"holder-{arm_name}-{hashlib.sha256(holder_model.encode()).hexdigest()[:12]}"
            self.progress.log(f"{alias} is held by {holder_model}: asking it the held-out questions ({arm_name})")
            await self.answer_all(arm, holder_model, results, train_sample=False)
            holder_score = await self.held_out_f1(results)
            mine, theirs = await self.held_out(arm_name), await self.held_out(results)
            ids = sorted(set(mine) & set(theirs))
            paired = compare_paired(
                "f1",
                "holder",
                [100 * theirs[i] for i in ids],
                "candidate",
                [100 * mine[i] for i in ids],
                level=self.config.promotion_level,
                resamples=self.config.resamples,
                seed=self.config.seed,
            )
            comparison = {**paired.difference.as_dict(), "test": "paired-bootstrap", "questions": len(ids)}
        evaluation = {
            "dataset": self.config.dataset,
            "seed": self.config.seed,
            "test_questions": len(self.split.test),
            "arm": arm_name,
            "run_dir": str(self.run.path),
        }
        decision = await self.client.promote(
            alias, candidate, score, holder_model, holder_score, evaluation, comparison
        )
        decisions[key] = decision
        await self.run.save_state()
        verdict = "promoted" if decision["promoted"] else "not promoted"
        self.progress.log(f"{alias}: {candidate} {verdict}: {decision['reason']}")
        return decision

    async def answer(self, arm: Arm, model: str, split: str, item: QAItem) -> dict[str, Any]:
        cfg = self.config
        rag = None
        if arm.retrieval:
            rag = {"vector_store_ids": [self.run.state["store"]["id"]], "top_k": cfg.top_k, "mode": cfg.mode}
        result = await self.client.chat(model, question_messages(item), self.answer_budget(arm), rag)
        em, f1 = best_over_answers(final_answer(result.text), item.answers)
        short = short_answer(result.text)
        em_short, f1_short = best_over_answers(short, item.answers)
        row: dict[str, Any] = {
            "id": item.id,
            "split": split,
            "question": item.question,
            "answers": list(item.answers),
            "prediction": result.text,
            "em": em,
            "f1": f1,
            "short_answer": short,
            "em_short": em_short,
            "f1_short": f1_short,
            "latency_s": round(result.latency_s, 4),
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
        }
        gold = self.gold_document(item)
        if arm.retrieval:
            row["passages"] = list(result.passages)  # as numbered in the prompt: for the groundedness figures
        if arm.retrieval and gold:
            ranked = list(dict.fromkeys(result.document_ids))
            answers = [normalize_answer(a) for a in item.answers]
            row.update(
                retrieved=ranked,
                gold_document=gold,
                hit_at_k=hit_at_k(ranked, [gold], cfg.top_k),
                recall_at_k=recall_at_k(ranked, [gold], cfg.top_k),
                answer_in_passages=float(any(a in normalize_answer(p) for p in result.passages for a in answers)),
            )
        return row
