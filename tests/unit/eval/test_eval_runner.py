"""The evaluation runs against a stand-in for the gateway's REST API: the order of steps, what
each arm asks, resuming without asking twice, and the BEIR mode's scoring per setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragtune_eval.beir import BeirConfig, BeirEvaluation, to_markdown
from ragtune_eval.client import ChatResult
from ragtune_eval.dataset import BeirDataset, QAItem, split_dataset
from ragtune_eval.rundir import RunDir
from ragtune_eval.runner import NoProgress, QaEvalConfig, QaEvaluation


class FakeGateway:
    """Answers like a tiny ragtune: search finds the document whose text shares the most words with
    the query; the base model answers "unknown", RAG answers the first cited passage's first word."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, bytes, str]] = {}
        self.store: list[str] = []
        self.chats: list[dict[str, Any]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.searches: list[dict[str, Any]] = []

    async def base_model(self) -> str:
        return "base"

    async def upload(self, filename: str, data: bytes, purpose: str) -> str:
        file_id = f"file-{len(self.files)}"
        self.files[file_id] = (filename, data, purpose)
        return file_id

    async def create_store(self, name: str, file_ids: list[str]) -> dict[str, Any]:
        self.store = list(file_ids)
        return {"id": "vs_1"}

    async def add_to_store(self, store_id: str, file_id: str) -> None:
        self.store.append(file_id)

    async def get_store(self, store_id: str) -> dict[str, Any]:
        return {"file_counts": {"total": len(self.store)}, "chunk_count": len(self.store)}

    def _rank(self, query: str) -> list[str]:
        words = set(query.lower().strip("?").split())
        score = {f: len(words & set(self.files[f][1].decode().lower().split())) for f in self.store}
        return sorted(self.store, key=lambda f: (-score[f], f))

    async def search(self, store_id: str, query: str, k: int, mode: str = "hybrid", ef: int | None = None) -> list:
        self.searches.append({"mode": mode, "ef": ef})
        return [
            {"document_id": f, "filename": self.files[f][0], "content": [{"text": self.files[f][1].decode()}]}
            for f in self._rank(query)[:k]
        ]

    async def chat(self, model: str, messages: list, max_tokens: int, rag: dict | None = None) -> ChatResult:
        self.chats.append({"model": model, "rag": rag, "question": messages[-1]["content"]})
        if rag is None:
            return ChatResult("unknown", 0.01, 10, 1, [], [])
        ranked = self._rank(messages[-1]["content"])[: rag["top_k"]]
        passages = [self.files[f][1].decode() for f in ranked]
        return ChatResult(passages[0].split()[0], 0.02, 50, 1, ranked, passages)

    async def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job_id = f"ftjob-{len(self.jobs)}"
        self.jobs[job_id] = body
        return {"id": job_id, "status": "queued"}

    async def job_events(self, job_id: str) -> list[dict[str, Any]]:
        return [
            {"created_at": 100, "data": {"status": "queued"}},
            {"created_at": 104, "data": {"status": "running"}},
            {"created_at": 120, "data": {"step": 1}},
        ]

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return {
            "id": job_id,
            "status": "succeeded",
            "publish_state": "published",
            "fine_tuned_model": f"ft:base:{job_id}",
            "created_at": 100,
            "finished_at": 130,
            "trained_tokens": 900,
            "train_loss": 0.5,
            "step": 3,
            "total_steps": 3,
        }


ITEMS = [
    QAItem(f"q{i}", f"Where does item{i} live?", (f"Place{i}",), f"Place{i} is where item{i} lives.") for i in range(8)
]


async def test_four_arms_then_resume(tmp_path: Path) -> None:
    gateway = FakeGateway()
    split = split_dataset(ITEMS, train=5, test=3, seed=1, train_sample=2)
    config = QaEvalConfig(dataset="x", train=5, test=3, seed=1, train_sample=2, top_k=2)
    report = await QaEvaluation(gateway, split, config, RunDir(tmp_path), NoProgress()).execute()  # type: ignore[arg-type]

    assert len(gateway.store) == 8  # every context of train and test
    assert [body["suffix"] for body in gateway.jobs.values()] == ["eval-ft", "eval-rag-ft"]
    closed, raft = (
        [json.loads(line) for line in gateway.files[b["training_file"]][1].decode().splitlines()]
        for b in gateway.jobs.values()
    )
    assert len(closed) == len(raft) == 5 and closed[0]["messages"][-1]["content"].startswith("Place")
    assert "Passages:" in raft[0]["messages"][0]["content"]
    assert {c["model"] for c in gateway.chats} == {"base", "ft:base:ftjob-0", "ft:base:ftjob-1"}
    assert len(gateway.chats) == 4 * 5  # 3 held-out + 2 train-sample questions per arm
    arms = report["arms"]
    assert arms["base"]["f1"] == 0.0 and arms["rag"]["f1"] == 100.0 and arms["rag"]["em"] == 100.0
    assert arms["rag"]["retrieval"]["hit_at_k"] == 1.0
    assert arms["ft"]["cost"]["training"] == {
        "job_id": "ftjob-0",
        "model": "ft:base:ftjob-0",
        "train_examples": 5,
        "train_wall_s": 26,
        "queued_s": 4,
        "train_cpu_s": None,
        "trained_tokens": 900,
        "final_train_loss": 0.5,
        "data_build_s": arms["ft"]["cost"]["training"]["data_build_s"],
    }
    assert report["recommendation"][-1].startswith("Recommended: rag ")

    # a rerun with the same settings asks nothing again and trains nothing again
    asked, jobs = len(gateway.chats), len(gateway.jobs)
    again = await QaEvaluation(gateway, split, config, RunDir(tmp_path), NoProgress()).execute()  # type: ignore[arg-type]
    assert (len(gateway.chats), len(gateway.jobs)) == (asked, jobs)
    assert again["arms"] == report["arms"]


async def test_an_interrupted_arm_asks_only_the_rest(tmp_path: Path) -> None:
    gateway = FakeGateway()
    split = split_dataset(ITEMS, train=5, test=3, seed=1, train_sample=0)
    config = QaEvalConfig(dataset="x", train=5, test=3, seed=1, train_sample=0, arms=("base",))
    run = RunDir(tmp_path)
    await run.append_result(
        "base",
        {
            "id": split.test[0].id,
            "split": "test",
            "em": 0.0,
            "f1": 0.0,
            "latency_s": 0.1,
            "prompt_tokens": 1,
            "completion_tokens": 1,
        },
    )
    await QaEvaluation(gateway, split, config, run, NoProgress()).execute()  # type: ignore[arg-type]
    assert [c["question"] for c in gateway.chats] == [i.question for i in split.test[1:]]
    assert gateway.store == []  # no retrieval arm: no store


async def test_beir_per_mode_and_ef(tmp_path: Path) -> None:
    gateway = FakeGateway()
    data = BeirDataset(
        corpus={"d1": "alpha beta", "d2": "gamma delta", "d3": "alpha gamma"},
        queries={"q1": "alpha beta", "q2": "delta"},
        qrels={"q1": {"d1": 1}, "q2": {"d2": 2}},
    )
    config = BeirConfig("beir", modes=("keyword", "hybrid"), ef_search=(40, 200), top_k=10)
    report = await BeirEvaluation(gateway, data, config, RunDir(tmp_path), NoProgress()).execute()  # type: ignore[arg-type]
    assert list(report["settings"]) == ["keyword", "hybrid-ef40", "hybrid-ef200"]
    for figures in report["settings"].values():
        assert figures["queries"] == 2 and figures["ndcg@10"] == 1.0 and figures["mrr@10"] == 1.0
    assert {(s["mode"], s["ef"]) for s in gateway.searches} == {("keyword", None), ("hybrid", 40), ("hybrid", 200)}
    assert "| hybrid-ef40 | 2 | 1.0000 |" in to_markdown(report)
    assert (tmp_path / "report.md").exists()
