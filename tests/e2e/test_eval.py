"""``ragtune eval`` end to end on a tiny QA set through the real stack: the vector store built from
the contexts, a closed-book and a RAFT adapter trained for real, all four arms answering through the
gateway, the report's structure, scores recomputed from the stored answers, and a resumed rerun that
asks nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ragtune_gateway.evaluation.dataset import load_qa, split_dataset
from ragtune_gateway.evaluation.gateway_client import GatewayClient
from ragtune_gateway.evaluation.metrics import best_over_answers
from ragtune_gateway.evaluation.rundir import RunDir
from ragtune_gateway.evaluation.runner import QaEvalConfig, QaEvaluation
from tests.e2e.conftest import make_tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONTEXTS = {
    "zorbel": "The Zorbel lighthouse stands on Kettle Point. It was painted teal in 1911 by the keeper Ada Vossberg.",
    "quenta": "Quenta harbour freezes every February. Its ferry, the Marigold, carries exactly 212 passengers.",
    "plimsoll": "The Plimsoll observatory keeps a brass telescope named Old Sable, built in Lisbon in 1874.",
    "varrow": "Varrow cheese is aged in basalt caves for nineteen months and is wrapped in walnut leaves.",
    "ostrin": "The river Ostrin rises in the Hallam hills and reaches the sea at the town of Peldry.",
}
QUESTIONS = [
    ("zorbel", "What colour was the Zorbel lighthouse painted?", "teal"),
    ("zorbel", "Who painted the Zorbel lighthouse?", "Ada Vossberg"),
    ("quenta", "How many passengers does the Quenta ferry Marigold carry?", "212"),
    ("quenta", "In which month does Quenta harbour freeze?", "February"),
    ("plimsoll", "What is the name of the Plimsoll observatory telescope?", "Old Sable"),
    ("plimsoll", "In which city was the Plimsoll telescope built?", "Lisbon"),
    ("varrow", "How long is Varrow cheese aged?", "nineteen months"),
    ("varrow", "What leaves is Varrow cheese wrapped in?", "walnut leaves"),
    ("ostrin", "At which town does the river Ostrin reach the sea?", "Peldry"),
    ("ostrin", "In which hills does the river Ostrin rise?", "the Hallam hills"),
]


def write_dataset(path: Path) -> Path:
    rows = [
        {"id": f"q{i}", "question": q, "answers": [a], "context": CONTEXTS[topic]}
        for i, (topic, q, a) in enumerate(QUESTIONS)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


async def test_four_arms_end_to_end_and_resume(admin: httpx.AsyncClient, gateway_url: str, tmp_path: Path) -> None:
    tenant = await make_tenant(admin, gateway_url)
    split = split_dataset(load_qa(write_dataset(tmp_path / "qa.jsonl")), train=6, test=4, seed=3, train_sample=2)
    config = QaEvalConfig(
        dataset="qa.jsonl", train=6, test=4, seed=3, train_sample=2, epochs=1, max_seq_length=512, concurrency=2
    )
    run_dir = tmp_path / "run"
    try:
        async with GatewayClient(gateway_url, tenant.key) as client:
            report = await QaEvaluation(client, split, config, RunDir(run_dir)).execute()

            assert list(report["arms"]) == ["base", "rag", "ft", "rag+ft"]
            for name, arm in report["arms"].items():
                assert arm["questions"] == 4 and arm["train_sample"]["questions"] == 2, name
                assert 0 <= arm["em"] <= arm["f1"] <= 100
                assert 0 < arm["latency_p50_ms"] <= arm["latency_p95_ms"]
                assert arm["output_tokens_per_s"] > 0
                rows = RunDir(run_dir).results(name)
                assert len(rows) == 6
                for row in rows:  # the scores are the predictions' scores
                    assert (row["em"], row["f1"]) == best_over_answers(row["prediction"], row["answers"])
            for name in ("rag", "rag+ft"):  # each question's own context is in the store of 5 contexts
                retrieval = report["arms"][name]["retrieval"]
                assert retrieval["questions"] == 4
                assert retrieval["hit_at_k"] == 1.0 and retrieval["recall_at_k"] == 1.0
                assert report["arms"][name]["cost"]["index"]["documents"] == 5
                assert report["arms"][name]["cost"]["index"]["chunks"] >= 5
            assert "retrieval" not in report["arms"]["base"]
            for name in ("ft", "rag+ft"):
                training = report["arms"][name]["cost"]["training"]
                assert training["model"].startswith("ft:") and training["train_examples"] == 6
                assert training["trained_tokens"] > 0 and training["train_wall_s"] >= 0
                assert training["train_cpu_s"] > 0
            assert (
                report["arms"]["ft"]["cost"]["training"]["model"]
                != report["arms"]["rag+ft"]["cost"]["training"]["model"]
            )
            assert report["recommendation"][-1].startswith("Recommended: ")
            for kind in ("report.json", "report.md", "chart.png"):
                assert (run_dir / kind).stat().st_size > 0
            assert "| rag+ft |" in (run_dir / "report.md").read_text()

            # a rerun resumes: no question asked again, no job trained again
            jobs = {k: v["job_id"] for k, v in RunDir(run_dir).state["jobs"].items()}
            again = await QaEvaluation(client, split, config, RunDir(run_dir)).execute()
            assert {k: v["job_id"] for k, v in RunDir(run_dir).state["jobs"].items()} == jobs
            assert all(len(RunDir(run_dir).results(name)) == 6 for name in again["arms"])
            assert again["arms"]["rag"]["f1"] == report["arms"]["rag"]["f1"]
    finally:
        await tenant.http.aclose()
        await tenant.client.close()
