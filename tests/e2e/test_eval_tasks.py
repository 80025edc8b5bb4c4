"""``ragtune eval task`` end to end on a tiny classification set through the real stack: the store of
labelled examples built with their nested position as an attribute, two adapters trained for real
(zero-shot and few-shot prompts), all four arms and a one-per-label learning-curve point answering
through the gateway, scores recomputed from the stored answers, the curve's few-shot arm shown only
examples of its subset, and a resumed rerun that asks and trains nothing again."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ragtune_eval.client import GatewayClient
from ragtune_eval.rundir import RunDir
from ragtune_eval.task_data import TaskItem, build_task
from ragtune_eval.task_metrics import score_classification
from ragtune_eval.task_runner import TaskEvalConfig, TaskEvaluation
from ragtune_eval.task_split import split_task
from tests.e2e.conftest import make_tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

MESSAGES = {
    "card_lost": [
        "I lost my card on the bus",
        "My card was stolen yesterday",
        "I cannot find my bank card anywhere",
        "Someone took my wallet with the card",
    ],
    "refund": [
        "I want my money back for this order",
        "How do I get a refund for a purchase",
        "The shop owes me a refund",
        "Please return the money I paid",
    ],
    "top_up": [
        "How do I add money to my account",
        "I want to top up my balance",
        "Can I top up with a transfer",
        "My top up did not arrive",
    ],
}


async def test_classification_four_arms_end_to_end_and_resume(
    admin: httpx.AsyncClient, gateway_url: str, tmp_path: Path
) -> None:
    tenant = await make_tenant(admin, gateway_url)
    items = [TaskItem(f"{label}-{i}", text, label) for label, texts in MESSAGES.items() for i, text in enumerate(texts)]
    data = build_task("classification", "intents", items)
    split = split_task(data, train=2, test=6, seed=1, train_sample=3, per_class=True)
    config = TaskEvalConfig(
        dataset="intents", kind="classification", train=2, test=6, per_class=True, seed=1, train_sample=3,
        shots=2, epochs=1, max_seq_length=512, curve=(1,), resamples=200, concurrency=2,
    )  # fmt: skip
    run_dir = tmp_path / "run"
    try:
        async with GatewayClient(gateway_url, tenant.key) as client:
            report = await TaskEvaluation(client, data, split, config, RunDir(run_dir)).execute()

            assert list(report["arms"]) == ["base", "rag", "ft", "rag+ft"]
            for name, arm in report["arms"].items():
                assert arm["items"] == 6 and arm["train_sample"]["items"] == 3, name
                assert 0 <= arm["score"] <= 100 and arm["score_ci"]["low"] <= arm["score"] <= arm["score_ci"]["high"]
                assert 0 < arm["latency_p50_ms"] <= arm["latency_p95_ms"] and arm["mean_prompt_tokens"] > 0
                rows = await RunDir(run_dir).results(name)
                assert len(rows) == 9
                for row in rows:  # the stored scores are the predictions' scores
                    found = score_classification(row["prediction"], row["gold"], data.labels)
                    assert {k: row[k] for k in found} == found
                    assert len(row["demonstrations"]) == (2 if name in ("rag", "rag+ft") else 0)
                    assert row["id"] not in row["demonstrations"]
            for name in ("rag", "rag+ft"):
                assert report["arms"][name]["cost"]["index"]["documents"] == 6
                assert report["arms"][name]["mean_prompt_tokens"] > report["arms"]["base"]["mean_prompt_tokens"]
            for name in ("ft", "rag+ft"):
                training = report["arms"][name]["cost"]["training"]
                assert training["model"].startswith("ft:") and training["train_examples"] == 6
                assert training["train_cpu_s"] > 0 and training["trained_tokens"] > 0
            subset = {item.id for item in split.subset(3)}  # one example per label
            for row in await RunDir(run_dir).results("rag@1"):
                assert set(row["demonstrations"]) <= subset, "the curve's few-shot arm searched only its subset"
            assert RunDir(run_dir).state["jobs"]["ft@1"]["examples"] == 3
            assert [row["size"] for row in report["learning_curve"]] == [1, 2]
            assert report["recommendation"][-1].startswith("Recommended: ")
            assert "| rag+ft |" in (run_dir / "report.md").read_text()
            assert (run_dir / "report.html").read_text().count("<svg") == 3

            # the arms are the runs of one eval, which the official client lists and the gateway compares
            eval_id = RunDir(run_dir).state["eval_id"]
            runs = {r.name: r async for r in tenant.client.evals.runs.list(eval_id)}
            assert sorted(runs) == sorted(["base", "rag", "ft", "rag+ft", "ft@1", "rag@1"])
            assert all(r.status == "completed" and r.result_counts.total == 6 for r in runs.values())
            outputs = [i async for i in tenant.client.evals.runs.output_items.list(runs["rag"].id, eval_id=eval_id)]
            stored = {row["id"]: row for row in await RunDir(run_dir).results("rag") if row["split"] == "test"}
            assert len(outputs) == 6
            for output in outputs:
                row = stored[output.datasource_item["id"]]
                assert output.sample is not None and output.sample.output[0].content == row["prediction"]
                assert output.datasource_item["demonstrations"] == row["demonstrations"]
                assert output.results[0].passed == (row["prediction"] == row["gold"])
            compared = (await tenant.http.get(f"/v1/evals/{eval_id}/comparison")).json()
            assert {r["name"] for r in compared["runs"]} == set(runs) and compared["recommendation"]

            jobs = {k: v["job_id"] for k, v in RunDir(run_dir).state["jobs"].items()}
            again = await TaskEvaluation(client, data, split, config, RunDir(run_dir)).execute()
            assert {k: v["job_id"] for k, v in RunDir(run_dir).state["jobs"].items()} == jobs
            assert [len(await RunDir(run_dir).results(name)) for name in again["arms"]] == [9] * 4
            assert again["arms"]["ft"]["score"] == report["arms"]["ft"]["score"]
    finally:
        await tenant.http.aclose()
        await tenant.client.close()
