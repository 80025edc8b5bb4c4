"""The freshness measurement end to end on three tiny facts through the real stack: the original
passages ingested and a closed-book adapter trained for real, every arm asked, the facts edited,
the store re-ingested through REST (the old files gone from it, search finding only the new
values), the adapter retrained and served, the refreshed arms asked with their answer times, and
the report's figures recomputed from the stored answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ragtune_eval.client import GatewayClient
from ragtune_eval.dataset import QAItem
from ragtune_eval.freshness_edit import answer_pool, mentions, plan_edits
from ragtune_eval.freshness_report import score
from ragtune_eval.freshness_runner import FreshnessConfig, FreshnessEvaluation
from ragtune_eval.rundir import RunDir
from tests.e2e.conftest import make_tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

FACTS = [
    QAItem("lake", "How deep is Lake Varn?", ("83 metres",), "Lake Varn lies in the north. It is 83 metres deep."),
    QAItem("tower", "How tall is the Orl tower?", ("41 metres",), "The Orl tower in Besk is 41 metres tall."),
    QAItem(
        "bridge", "How long is the Kemp bridge?", ("65 metres",), "The Kemp bridge over the Dral is 65 metres long."
    ),
]

# the counterfactual values: other answers of the same kind, in no passage
DONORS = [QAItem(f"d{n}", "How far?", (f"{n} metres",)) for n in (12, 58, 97)]


async def test_edited_facts_are_reingested_and_retrained_and_timed(
    admin: httpx.AsyncClient, gateway_url: str, tmp_path: Path
) -> None:
    tenant = await make_tenant(admin, gateway_url)
    edits = plan_edits(FACTS, answer_pool(DONORS), count=3, seed=3)
    assert len(edits) == 3 and {e.new_answer for e in edits} <= {d.answers[0] for d in DONORS}
    config = FreshnessConfig(
        dataset="towns", items=3, seed=3, epochs=1, batch_size=4, max_seq_length=128, max_tokens=16,
        resamples=200, concurrency=2,
    )  # fmt: skip
    run_dir = tmp_path / "run"
    try:
        async with GatewayClient(gateway_url, tenant.key) as client:
            report = await FreshnessEvaluation(client, edits, config, RunDir(run_dir)).execute()

            state = RunDir(run_dir).state
            store = state["store"]
            listed = await client.call("GET", f"/v1/vector_stores/{store['id']}/files", params={"limit": 100})
            in_store = {f["id"] for f in listed["data"]}
            assert in_store == set(store["current"].values()) and not in_store & set(store["files"].values())
            for edit in edits:  # search finds the new value where the old one stood, and never the old one
                hits = await client.search(store["id"], edit.question, 3)
                texts = " ".join(h["content"][0]["text"] for h in hits)
                assert mentions(texts, edit.new_answer) and not mentions(texts, edit.old_answers[0])
                assert not {h["document_id"] for h in hits} & set(store["files"].values())

            assert state["jobs"]["ft"]["model"] != state["jobs"]["ft-fresh-1"]["model"]
            arms = report["arms"]
            assert list(arms) == ["rag", "ft", "rag+ft (old adapter)", "rag+ft (retrained)"]
            by_id = {e.id: e for e in edits}
            for name, stored in (("rag", "rag-after-1"), ("ft", "ft-after-1")):
                rows = await RunDir(run_dir).results(stored)
                assert len(rows) == 3
                new = 100 * sum(score(r, by_id[r["id"]])["new"] for r in rows) / 3
                assert arms[name]["after"]["new"]["value"] == round(new, 2)
                time = arms[name]["time"]
                assert 0 < time["ready_s"] <= time["first_answer_s"] <= time["all_answered_s"]
                assert all(time["ready_s"] < r["done_s"] for r in rows)
            training = arms["ft"]["time"]
            assert training["examples"] == 3 and training["train_cpu_s"] > 0 and training["trained_tokens"] > 0
            assert report["facts"] == 3 and (run_dir / "freshness.md").exists()
    finally:
        await tenant.http.aclose()
        await tenant.client.close()
