"""The traffic loop end to end, through the official openai client wherever the dialect has the
call (httpx for ragtune's extensions: distillations, promote, rollback): a small intent task's
traffic flows through an alias serving the base model, stored with metadata; users correct the
answers (metadata updates); a distillation builds the training file and holds prompts out; deleting
a stored completion takes it out of the not-yet-used file; a LoRA job trains on the file; an eval
over the held-out stored traffic compares the adapter with the alias's holder; the alias moves only
on a significant improvement, the same traffic is then answered by the adapter through the alias,
and one call rolls it back."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.e2e.conftest import Tenant, make_tenant

INTENTS = {
    "card_arrival": [
        "When will my card arrive?",
        "My card has not come yet.",
        "Is my new card on its way?",
        "How long does card delivery take?",
        "Still waiting for my card.",
    ],
    "exchange_rate": [
        "What exchange rate do you use?",
        "How much is a euro in dollars today?",
        "Is your currency rate fair?",
        "Where can I see exchange rates?",
        "What rate for pounds?",
    ],
    "lost_or_stolen_card": [
        "I lost my card.",
        "My card was stolen.",
        "Someone took my wallet with my card.",
        "I cannot find my card anywhere.",
        "Block my stolen card please.",
    ],
}
SYSTEM = "Classify the banking query. Answer with one label only: " + ", ".join(INTENTS) + "."
APP = {"app": "loop"}


async def _job_done(tenant: Tenant, job_id: str) -> Any:
    for _ in range(900):
        job = await tenant.client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(1)
    raise AssertionError(f"job {job_id} did not finish")


async def _run_done(tenant: Tenant, eval_id: str, run_id: str) -> Any:
    for _ in range(600):
        run = await tenant.client.evals.runs.retrieve(run_id, eval_id=eval_id)
        if run.status not in ("queued", "in_progress"):
            return run
        await asyncio.sleep(1)
    raise AssertionError(f"run {run_id} did not finish")


async def test_traffic_distill_train_evaluate_promote_roll_back(
    admin: httpx.AsyncClient, gateway_url: str, base_model: str
) -> None:
    tenant = await make_tenant(admin, gateway_url)
    client, http = tenant.client, tenant.http
    stored = await admin.post(f"/v1/admin/tenants/{tenant.id}/settings", json={"store_completions": True})
    assert stored.status_code == 200, stored.text
    alias = "ft:support"
    serving = await http.post(
        f"/v1/aliases/{alias}/promotions", json={"candidate": base_model, "candidate_score": 0, "metric": "pass_rate"}
    )
    assert serving.status_code == 200 and serving.json()["promoted"], serving.text

    # traffic through the alias, stored by the tenant's setting; users correct every answer
    gold: dict[str, str] = {}
    for intent, queries in INTENTS.items():
        for query in queries:
            answer = await client.chat.completions.create(
                model=alias,
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": query}],
                max_tokens=8,
                temperature=0,
                metadata=APP,
            )
            gold[answer.id] = intent
            await client.chat.completions.update(answer.id, metadata={**APP, "feedback": "bad", "correction": intent})
    listed = [c async for c in client.chat.completions.list(model=alias, metadata=APP)]
    assert {c.id for c in listed} == set(gold)

    made = await http.post(
        "/v1/distillations",
        json={"filter": {"model": alias, "metadata": APP, "feedback": ["bad"]}, "holdout_fraction": 0.4, "seed": 1},
    )
    assert made.status_code == 200, made.text
    distillation = made.json()
    counts = distillation["counts"]
    assert counts["matched"] == 15 and counts["training"] == 9 and counts["holdout"] == 6, counts
    assert counts["corrected"] == 9 and counts["rejected"] == 0
    files = [f.id async for f in client.files.list(purpose="fine-tune")]
    assert distillation["file_id"] in files

    # deleting a training completion rewrites the file nobody trained on yet
    training_ids = [i for i in gold if i not in distillation["holdout_completion_ids"]]
    await client.chat.completions.delete(training_ids[0])
    after = (await http.get(f"/v1/distillations/{distillation['id']}")).json()
    assert after["counts"]["training"] == 8 and after["file_id"] != distillation["file_id"]
    files = [f.id async for f in client.files.list(purpose="fine-tune")]
    assert after["file_id"] in files and distillation["file_id"] not in files

    job = await client.fine_tuning.jobs.create(
        model=base_model,
        training_file=after["file_id"],
        hyperparameters={"n_epochs": 6, "batch_size": 4, "learning_rate_multiplier": 10},
    )
    done = await _job_done(tenant, job.id)
    assert done.status == "succeeded" and done.fine_tuned_model, done
    adapter = done.fine_tuned_model

    grader: Any = {
        "type": "string_check",
        "name": "intent",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
        "operation": "ilike",
    }
    config: Any = {"type": "stored_completions", "metadata": APP}
    evaluation = await client.evals.create(
        name="held-out traffic",
        data_source_config=config,
        testing_criteria=[grader],
    )
    assert evaluation.data_source_config.type == "stored_completions"

    async def run_of(model: str) -> str:
        source: Any = {
            "type": "completions",
            "model": model,
            "input_messages": {"type": "item_reference", "item_reference": "item.input"},
            "sampling_params": {"max_completion_tokens": 8, "temperature": 0},
            "source": {"type": "stored_completions", "metadata": APP, "distillation_id": distillation["id"]},
        }
        run = await client.evals.runs.create(evaluation.id, data_source=source)
        finished = await _run_done(tenant, evaluation.id, run.id)
        assert finished.status == "completed" and finished.result_counts.total == 6, finished
        return run.id

    holder_run, adapter_run = await run_of(base_model), await run_of(adapter)
    items = [i async for i in client.evals.runs.output_items.list(adapter_run, eval_id=evaluation.id)]
    assert {i.datasource_item["completion_id"] for i in items} == set(distillation["holdout_completion_ids"])
    compared = (await http.get(f"/v1/evals/{evaluation.id}/comparison")).json()
    rates = {r["run_id"]: r["pass_rate"]["intent"]["value"] for r in compared["runs"]}
    assert rates[adapter_run] > rates[holder_run], compared

    offered = await http.post(f"/v1/evals/{evaluation.id}/promote", json={"alias": alias, "run_id": adapter_run})
    assert offered.status_code == 200, offered.text
    decision = offered.json()
    assert decision["holder"] == base_model and decision["evaluation"]["holder_run_id"] == holder_run
    paired = next(c for c in compared["comparisons"] if {c["baseline"], c["candidate"]} == {holder_run, adapter_run})
    # the alias moves exactly when the comparison the eval shows is a significant gain (six items: the
    # adapter must be right on all six where the holder is wrong for McNemar to agree)
    assert decision["promoted"] == (paired["significant"] and rates[adapter_run] > rates[holder_run]), (
        decision,
        paired,
    )
    if decision["promoted"]:
        again = await client.chat.completions.create(
            model=alias,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "I lost my card."}],
            max_tokens=8,
            temperature=0,
        )
        assert again.model == adapter
        back = await http.post(f"/v1/aliases/{alias}/rollback")
        assert back.status_code == 200 and back.json()["candidate"] == base_model, back.text
        assert (await http.get(f"/v1/aliases/{alias}")).json()["model"] == base_model
    else:
        assert (await http.get(f"/v1/aliases/{alias}")).json()["model"] == base_model
    # the eval's samples are not traffic: none of them was stored, though the tenant stores by default
    assert [c.id async for c in client.chat.completions.list(model=base_model)] == []
    assert len([c.id async for c in client.chat.completions.list(model=adapter)]) <= 1  # the answer above
    await http.aclose()
    await client.close()
