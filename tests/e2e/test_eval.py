"""``ragtune eval`` end to end on a tiny QA set through the real stack: the vector store built from
the contexts, a closed-book and a RAFT adapter trained for real, all four arms answering through the
gateway, the report's structure, scores recomputed from the stored answers, and a resumed rerun that
asks nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ragtune_eval.arms import final_answer, short_answer
from ragtune_eval.client import GatewayClient
from ragtune_eval.dataset import Split, load_qa, split_dataset
from ragtune_eval.judge import Judge
from ragtune_eval.rundir import RunDir
from ragtune_eval.runner import QaEvalConfig, QaEvaluation
from ragtune_eval.scoring import best_over_answers
from tests.e2e.conftest import Tenant, make_tenant

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
        dataset="qa.jsonl",
        train=6,
        test=4,
        seed=3,
        train_sample=2,
        epochs=1,
        max_seq_length=512,
        concurrency=2,
        reasoning_max_tokens=48,
        resamples=200,
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
                rows = await RunDir(run_dir).results(name)
                assert len(rows) == 6
                for row in rows:  # the scores are the predictions' scores (the final answer, and its short form)
                    assert (row["em"], row["f1"]) == best_over_answers(final_answer(row["prediction"]), row["answers"])
                    assert row["short_answer"] == short_answer(row["prediction"])
                    assert (row["em_short"], row["f1_short"]) == best_over_answers(row["short_answer"], row["answers"])
                ci = arm["f1_ci"]
                assert ci["low"] <= arm["f1"] <= ci["high"] and arm["short"]["f1_ci"] is not None
            for name in ("rag", "rag+ft"):  # each question's own context is in the store of 5 contexts
                retrieval = report["arms"][name]["retrieval"]
                assert retrieval["questions"] == 4
                assert retrieval["hit_at_k"] == 1.0 and retrieval["recall_at_k"] == 1.0
                assert report["arms"][name]["cost"]["index"]["documents"] == 5
                assert report["arms"][name]["cost"]["index"]["chunks"] >= 5
            assert "retrieval" not in report["arms"]["base"] and "grounding" not in report["arms"]["base"]
            for name in ("rag", "rag+ft"):
                assert report["arms"][name]["grounding"]["questions"] == 4
            assert report["arms"]["rag+ft"]["recipe"].startswith("RAFT published: 1 gold + 4 distractors")
            assert {(c["baseline"], c["candidate"]) for c in report["comparisons"]} >= {
                ("base", "rag"),
                ("rag", "rag+ft"),
            }
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
            for kind in ("report.json", "report.md", "chart.svg", "report.html"):
                assert (run_dir / kind).stat().st_size > 0
            assert "| rag+ft |" in (run_dir / "report.md").read_text()

            # a rerun resumes: no question asked again, no job trained again; with an LLM judge (the
            # gateway itself, an OpenAI-compatible endpoint) it judges the retrieval arms' answers once
            jobs = {k: v["job_id"] for k, v in RunDir(run_dir).state["jobs"].items()}
            judge = Judge(f"{gateway_url}/v1", await client.base_model(), api_key=tenant.key)
            try:
                again = await QaEvaluation(client, split, config, RunDir(run_dir), judge=judge).execute()
            finally:
                await judge.aclose()
            assert {k: v["job_id"] for k, v in RunDir(run_dir).state["jobs"].items()} == jobs
            assert [len(await RunDir(run_dir).results(name)) for name in again["arms"]] == [6] * len(again["arms"])
            assert again["arms"]["rag"]["f1"] == report["arms"]["rag"]["f1"]
            for name in ("rag", "rag+ft"):
                judged = again["arms"][name]["judge"]
                assert judged["judged"] == 4 and judged["model"] == await client.base_model()
                verdicts = await RunDir(run_dir).results(f"judge-{name}")
                assert sorted(v["id"] for v in verdicts) == sorted(item.id for item in split.test)
                assert all(v["reply"] for v in verdicts)  # what the judge said is kept, read or not
            assert "judge" not in again["arms"]["base"] and "LLM judge" in (run_dir / "report.md").read_text()

            await check_promotions(client, tenant, admin, gateway_url, split, config, run_dir, report)
    finally:
        await tenant.http.aclose()
        await tenant.client.close()


async def check_promotions(
    client: GatewayClient,
    tenant: Tenant,
    admin: httpx.AsyncClient,
    gateway_url: str,
    split: Split,
    config: QaEvalConfig,
    run_dir: Path,
    report: dict,
) -> None:
    """The ft adapter takes a new alias (no holder); the RAFT adapter is then offered for it, the
    holder answers the same held-out questions with retrieval, and the alias moves only if the
    candidate's F1 is higher. Chat completions accept the alias; other tenants cannot see it."""
    alias = "ft:latest-good"
    ft_model = report["arms"]["ft"]["cost"]["training"]["model"]
    raft_model = report["arms"]["rag+ft"]["cost"]["training"]["model"]
    first = (await QaEvaluation(client, split, config, RunDir(run_dir)).execute((alias, "ft")))["promotion"]
    assert first["promoted"] and first["candidate"] == ft_model and first["holder"] is None
    assert first["candidate_score"] == report["arms"]["ft"]["f1"]

    second = (await QaEvaluation(client, split, config, RunDir(run_dir)).execute((alias, "rag+ft")))["promotion"]
    holder_rows = [n for n in (run_dir / "results").iterdir() if n.name.startswith("holder-rag_ft-")]
    assert len(holder_rows) == 1, "the holder answers the held-out questions under the candidate's arm"
    rows = await RunDir(run_dir).results(holder_rows[0].stem)
    assert {r["id"] for r in rows} == {item.id for item in split.test} and all("hit_at_k" in r for r in rows)
    holder_f1 = round(100 * sum(r["f1"] for r in rows) / len(rows), 2)
    assert second["holder"] == ft_model and second["holder_score"] == holder_f1
    assert second["candidate"] == raft_model and second["candidate_score"] == report["arms"]["rag+ft"]["f1"]
    comparison = second["comparison"]  # the paired difference on the same questions, kept with the decision
    assert comparison["questions"] == len(split.test) and comparison["low"] <= comparison["value"] <= comparison["high"]
    assert comparison["value"] == pytest.approx(second["candidate_score"] - holder_f1, abs=0.02)
    assert second["promoted"] == (comparison["low"] > 0), second
    expected = raft_model if second["promoted"] else ft_model

    held = (await tenant.http.get(f"/v1/aliases/{alias}")).json()
    assert held["model"] == expected
    history = (await tenant.http.get(f"/v1/aliases/{alias}/promotions")).json()["data"]
    assert [(p["candidate"], p["promoted"]) for p in history] == [(ft_model, True), (raft_model, second["promoted"])]
    assert (run_dir / "report.md").read_text().count("## Promotion") == 1

    # the alias answers as its holder; it is listed among the models
    answer = await tenant.client.chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "Who painted the Zorbel lighthouse?"}], max_tokens=8
    )
    assert answer.model == expected and answer.choices[0].message.content
    listed = {m.id: (m.model_extra or {}).get("alias_for") for m in (await tenant.client.models.list()).data}
    assert listed[alias] == expected

    # the rules, on the API itself
    promotions = f"/v1/aliases/{alias}/promotions"
    stale = {"candidate": ft_model, "candidate_score": 100.0, "holder": None, "holder_score": None}
    moved = await tenant.http.post(promotions, json=stale)
    assert moved.status_code == 409 and moved.json()["error"]["param"] == "holder"
    low = {"candidate": raft_model if expected == ft_model else ft_model, "candidate_score": 1.0}
    worse = {"value": -1.0, "low": -2.0, "high": 0.0, "level": 0.95, "questions": 3}
    kept = await tenant.http.post(
        promotions, json={**low, "holder": expected, "holder_score": 2.0, "comparison": worse}
    )
    assert kept.status_code == 200 and not kept.json()["promoted"]
    level = {"value": 0.0, "low": -1.0, "high": 1.0, "level": 0.95, "questions": 3}
    tie_body = {**low, "candidate_score": 2.0, "holder": expected, "holder_score": 2.0, "comparison": level}
    tie = await tenant.http.post(promotions, json=tie_body)
    assert tie.status_code == 200 and not tie.json()["promoted"], "a tie keeps the holder"
    assert (await tenant.http.get(f"/v1/aliases/{alias}")).json()["model"] == expected
    assert len((await tenant.http.get(promotions)).json()["data"]) == 4, "refused promotions are recorded too"
    for body, param in (
        ({**low, "holder": expected}, "holder_score"),
        ({**low, "holder": expected, "holder_score": 2.0}, "comparison"),
        # the base model may hold an alias now (traffic through it from day one): over a holder, the comparison
        ({**low, "candidate": await client.base_model(), "holder": expected, "holder_score": 0.0}, "comparison"),
        ({**low, "candidate": "ft:nope:x:ftjob-missing", "holder": expected, "holder_score": 0.0}, "candidate"),
        ({**low, "candidate_score": "high"}, "candidate_score"),
    ):
        bad = await tenant.http.post(promotions, json=body)
        assert 400 <= bad.status_code < 500 and bad.json()["error"]["param"] == param, (body, bad.text)
    bad_alias = await tenant.http.post("/v1/aliases/latest/promotions", json=low)
    assert bad_alias.status_code == 400 and bad_alias.json()["error"]["param"] == "alias"

    # another tenant: the alias does not exist for it
    other = await make_tenant(admin, gateway_url)
    try:
        assert (await other.http.get(f"/v1/aliases/{alias}")).status_code == 404
        assert (await other.http.get("/v1/aliases")).json()["data"] == []
        chat = await other.http.post(
            "/v1/chat/completions", json={"model": alias, "messages": [{"role": "user", "content": "hi"}]}
        )
        assert chat.status_code == 404 and chat.json()["error"]["code"] == "model_not_found"
        steal = await other.http.post(promotions, json={**low, "holder": None})
        assert steal.status_code == 404 and steal.json()["error"]["param"] == "candidate"
        assert (await other.http.delete(f"/v1/aliases/{alias}")).status_code == 404
    finally:
        await other.http.aclose()
        await other.client.close()
    assert (await tenant.http.get(f"/v1/aliases/{alias}")).json()["model"] == expected
