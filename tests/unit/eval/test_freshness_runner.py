"""The freshness measurement against a stand-in for the gateway's REST API: what is ingested,
replaced and trained, in which order, what each arm answers before and after its refresh, the
report's figures, resuming without asking twice, and an interrupted refresh started again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ragtune_eval.client import ChatResult, EvalApiError
from ragtune_eval.dataset import QAItem
from ragtune_eval.freshness_edit import answer_pool, plan_edits
from ragtune_eval.freshness_report import to_markdown
from ragtune_eval.freshness_runner import FreshnessConfig, FreshnessEvaluation
from ragtune_eval.rundir import RunDir
from ragtune_eval.runner import NoProgress

ITEMS = [
    QAItem(f"q{i}", f"Who founded town{i}?", (name,), f"Town{i} was founded by {name} long ago.")
    for i, name in enumerate(["Anna Weber", "Carl Moser", "Rosa Klein", "Otto Brandt", "Ida Vogel"])
]


class FakeGateway:
    """A tiny ragtune: RAG answers with the passage that shares the most words with the question;
    an adapter answers what its training file said for the question (with or without passages,
    so a memorised answer overrides the documents); the base model answers "unknown"."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.store: list[str] = []
        self.deleted: list[str] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.chats: list[tuple[str, bool]] = []
        self.fail_job: int | None = None  # the job number whose creation fails once
        self.busy_reads = 0  # job status reads answered 504 (a loaded trainer) before one succeeds

    async def base_model(self) -> str:
        return "base"

    async def upload(self, filename: str, data: bytes, purpose: str) -> str:
        file_id = f"file-{len(self.files)}"
        self.files[file_id] = data
        return file_id

    async def create_store(self, name: str, file_ids: list[str]) -> dict[str, Any]:
        self.store = list(file_ids)
        return {"id": "vs_1"}

    async def add_to_store(self, store_id: str, file_id: str, attributes: dict[str, Any] | None = None) -> None:
        self.store.append(file_id)

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        assert method == "DELETE" and path.startswith("/v1/vector_stores/vs_1/files/")
        file_id = path.rsplit("/", 1)[1]
        self.store.remove(file_id)
        self.deleted.append(file_id)
        return {"id": file_id, "deleted": True}

    async def get_store(self, store_id: str) -> dict[str, Any]:
        return {"file_counts": {"total": len(self.store)}, "chunk_count": len(self.store)}

    def memorised(self, model: str) -> dict[str, str]:
        job = self.jobs[model.rsplit(":", 1)[1]]
        lines = [json.loads(line)["messages"] for line in self.files[job["training_file"]].decode().splitlines()]
        return {m[1]["content"]: m[2]["content"] for m in lines}

    async def chat(self, model: str, messages: list, max_tokens: int, rag: dict | None = None) -> ChatResult:
        question = messages[-1]["content"]
        self.chats.append((model, rag is not None))
        if model != "base":
            return ChatResult(self.memorised(model)[question], 0.01, 10, 3, [], [])
        if rag is None:
            return ChatResult("unknown", 0.01, 10, 1, [], [])
        words = set(question.lower().strip("?").split())
        best = max(self.store, key=lambda f: len(words & set(self.files[f].decode().lower().split())))
        return ChatResult(self.files[best].decode(), 0.02, 50, 8, [best], [self.files[best].decode()])

    async def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.fail_job == len(self.jobs):
            self.fail_job = None
            raise EvalApiError("refused", 500)
        job_id = f"ftjob-{len(self.jobs)}"
        self.jobs[job_id] = body
        return {"id": job_id, "status": "queued"}

    async def job_events(self, job_id: str) -> list[dict[str, Any]]:
        return [{"created_at": 100, "data": {"status": "running"}}]

    async def get_job(self, job_id: str) -> dict[str, Any]:
        if self.busy_reads:
            self.busy_reads -= 1
            raise EvalApiError("The trainer service did not answer in time.", 504)
        return {
            "id": job_id,
            "status": "succeeded",
            "publish_state": "published",
            "fine_tuned_model": f"ft:base:{job_id}",
            "created_at": 99,
            "finished_at": 130,
            "trained_tokens": 500,
            "cpu_seconds": 42.0,
        }


EDITS = plan_edits(ITEMS, answer_pool(ITEMS), count=4, seed=0)
CONFIG = FreshnessConfig(dataset="towns", items=4, epochs=1, resamples=200, concurrency=2)


async def test_refresh_each_arm_then_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ragtune_eval.freshness_runner.WAIT_PAUSE_S", 0.0)
    gateway = FakeGateway()
    gateway.busy_reads = 2  # waited through, for the same job
    assert len(EDITS) == 4
    report = await FreshnessEvaluation(gateway, EDITS, CONFIG, RunDir(tmp_path), NoProgress()).execute()  # type: ignore[arg-type]

    # the store ends with exactly the edited passages; the originals were deleted from it
    assert sorted(gateway.files[f].decode() for f in gateway.store) == sorted(e.new_context for e in EDITS)
    assert sorted(gateway.files[f].decode() for f in gateway.deleted) == sorted(e.old_context for e in EDITS)
    assert len(gateway.jobs) == 2  # the original adapter and the retrained one, each created once
    old_job = gateway.jobs["ftjob-0"]
    assert set(gateway.memorised("ft:base:ftjob-0").values()) == {e.old_answers[0] for e in EDITS}
    assert set(gateway.memorised("ft:base:ftjob-1").values()) == {e.new_answer for e in EDITS}
    assert old_job["hyperparameters"] == {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 5.0}

    arms = report["arms"]
    assert list(arms) == ["rag", "ft", "rag+ft (old adapter)", "rag+ft (retrained)"]
    rag, ft, stale = arms["rag"], arms["ft"], arms["rag+ft (old adapter)"]
    assert (rag["before"]["new"]["value"], rag["after"]["new"]["value"], rag["after"]["old"]["value"]) == (0, 100, 0)
    assert (rag["after"]["passages_new"]["value"], rag["after"]["passages_old"]["value"]) == (100, 0)
    assert "passages_new" not in ft["after"]
    assert (ft["before"]["old"]["value"], ft["before"]["new"]["value"], ft["after"]["new"]["value"]) == (100, 0, 100)
    assert ft["after"]["em_new"]["value"] == 100.0
    assert (stale["after"]["new"]["value"], stale["after"]["old"]["value"]) == (0, 100)  # memorised wins here
    assert arms["rag+ft (retrained)"]["after"]["new"]["value"] == 100
    assert rag["after_minus_before_new"]["difference"] == 100.0 and rag["after_minus_before_new"]["p_value"] < 0.2
    assert 0 <= rag["time"]["ready_s"] <= rag["time"]["first_correct_s"] <= rag["time"]["all_answered_s"]
    assert ft["time"]["train_cpu_s"] == 42.0 and ft["time"]["train_wall_s"] == 30 and ft["time"]["examples"] == 4
    assert ft["time"]["ready_s"] <= ft["time"]["first_correct_s"] == ft["time"]["time_to_fresh_s"]
    assert report["time_to_fresh"]["rag_s"] == rag["time"]["first_correct_s"]
    assert "Re-ingesting the changed documents" in rag["verdict"] and "retraining" in ft["verdict"]
    assert "| rag+ft (old adapter) |" in to_markdown(report)
    assert (tmp_path / "freshness.json").exists() and (tmp_path / "freshness.md").exists()

    # a rerun reads what is there: nothing asked, trained or re-ingested again
    asked, jobs, files = len(gateway.chats), len(gateway.jobs), len(gateway.files)
    again = await FreshnessEvaluation(gateway, EDITS, CONFIG, RunDir(tmp_path), NoProgress()).execute()  # type: ignore[arg-type]
    assert (len(gateway.chats), len(gateway.jobs), len(gateway.files)) == (asked, jobs, files)
    assert again["arms"] == arms


async def test_an_interrupted_refresh_is_measured_again_from_the_edit(tmp_path: Path) -> None:
    gateway = FakeGateway()
    gateway.fail_job = 1  # the retraining after the edit fails once
    with pytest.raises(EvalApiError):
        await FreshnessEvaluation(gateway, EDITS, CONFIG, RunDir(tmp_path), NoProgress()).execute()  # type: ignore[arg-type]
    assert RunDir(tmp_path).state["after"] == {
        "attempt": 1,
        "started_at": RunDir(tmp_path).state["after"]["started_at"],
    }
    before = len(gateway.chats)

    report = await FreshnessEvaluation(gateway, EDITS, CONFIG, RunDir(tmp_path), NoProgress()).execute()  # type: ignore[arg-type]
    assert report["attempt"] == 2
    assert len(await RunDir(tmp_path).results("rag-after-2")) == 4
    assert len(gateway.deleted) == 8  # the originals, then attempt 1's edited files: re-ingested for real
    assert sorted(gateway.files[f].decode() for f in gateway.store) == sorted(e.new_context for e in EDITS)
    # the answers before the edit were kept; the refreshed arms were asked again
    assert sum(1 for model, rag in gateway.chats[before:] if model == "base" and rag) == 4
    assert report["arms"]["ft"]["after"]["new"]["value"] == 100
