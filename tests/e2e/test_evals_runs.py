"""Eval runs that sample a real model, through the official ``openai`` client against the whole
stack (real vLLM, retriever, PostgreSQL): a ``completions`` run from a template, one from messages
kept in the items (``item_reference``), and a ``responses`` run with ``file_search`` over a vector
store. Every output item carries what the model was asked and answered, its usage, and grades that
are those of its own answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.conftest import Tenant
from tests.e2e.test_fine_tuning import COLOURS, TRAINING, _wait_final

pytestmark = pytest.mark.asyncio(loop_scope="session")

SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}, "messages": {"type": "array"}},
    "required": ["question", "answer"],
}
CONTAINS: Any = {
    "type": "string_check",
    "name": "mentions the answer",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "ilike",
}
SIMILAR: Any = {
    "type": "text_similarity",
    "name": "rouge",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "evaluation_metric": "rouge_1",
    "pass_threshold": 0.2,
}
ITEMS = [
    {"question": "What is the capital of France?", "answer": "Paris"},
    {"question": "How many legs does a spider have?", "answer": "eight"},
    {"question": "What colour is the sky on a clear day?", "answer": "blue"},
]


async def _completed(tenant: Tenant, eval_id: str, run_id: str) -> Any:
    for _ in range(600):
        run = await tenant.client.evals.runs.retrieve(run_id, eval_id=eval_id)
        if run.status not in ("queued", "in_progress"):
            return run
        await asyncio.sleep(1)
    raise AssertionError(f"run {run_id} did not finish")


async def _check_items(tenant: Tenant, eval_id: str, run_id: str, model: str, count: int) -> list[Any]:
    items = [i async for i in tenant.client.evals.runs.output_items.list(run_id, eval_id=eval_id)]
    assert [i.datasource_item_id for i in items] == list(range(count))
    for item in items:
        answer = item.sample.output[0].content or ""
        assert item.sample.model == model and item.sample.usage.prompt_tokens > 0
        assert item.sample.usage.completion_tokens > 0 and answer
        contains = next(r for r in item.results if r.name == "mentions the answer")
        assert contains.passed == (str(item.datasource_item["answer"]).lower() in answer.lower()), answer
        assert item.status == ("pass" if all(r.passed for r in item.results) else "fail")
    return items


async def test_completions_and_responses_runs_sample_the_model(
    tenant_a: Tenant, base_model: str, handbook_store: tuple[str, str]
) -> None:
    client = tenant_a.client
    config: Any = {"type": "custom", "item_schema": SCHEMA, "include_sample_schema": True}
    evaluation = await client.evals.create(
        name="trivia", data_source_config=config, testing_criteria=[CONTAINS, SIMILAR]
    )  # type: ignore[list-item]
    template: Any = {
        "type": "completions",
        "model": base_model,
        "input_messages": {
            "type": "template",
            "template": [
                {"role": "system", "content": "Answer in one or two words."},
                {"role": "user", "content": "{{item.question}}"},
            ],
        },
        "sampling_params": {"max_completion_tokens": 12, "temperature": 0},
        "source": {"type": "file_content", "content": [{"item": item} for item in ITEMS]},
    }
    referenced: Any = {
        "type": "completions",
        "model": base_model,
        "input_messages": {"type": "item_reference", "item_reference": "item.messages"},
        "sampling_params": {"max_completion_tokens": 12, "temperature": 0},
        "source": {
            "type": "file_content",
            "content": [
                {"item": {**item, "messages": [{"role": "user", "content": item["question"]}]}} for item in ITEMS
            ],
        },
    }
    store_id, _ = handbook_store
    grounded: Any = {
        "type": "responses",
        "model": base_model,
        "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.question}}"}]},
        "sampling_params": {
            "max_completion_tokens": 24,
            "temperature": 0,
            "tools": [{"type": "file_search", "vector_store_ids": [store_id]}],
        },
        "source": {
            "type": "file_content",
            "content": [{"item": {"question": "How many days of paid leave does an employee get?", "answer": "27"}}],
        },
    }
    runs = [await client.evals.runs.create(evaluation.id, data_source=ds) for ds in (template, referenced, grounded)]
    for run, count in zip(runs, (3, 3, 1), strict=True):
        done = await _completed(tenant_a, evaluation.id, run.id)
        assert done.status == "completed", done
        assert done.result_counts.total == count and done.result_counts.errored == 0
        assert done.per_model_usage[0].model_name == base_model and done.per_model_usage[0].invocation_count == count
        items = await _check_items(tenant_a, evaluation.id, run.id, base_model, count)
        assert done.result_counts.passed == sum(i.status == "pass" for i in items)
    first = await client.evals.runs.output_items.retrieve(
        f"outputitem_{runs[0].id.removeprefix('evalrun_')}-0", eval_id=evaluation.id, run_id=runs[0].id
    )
    assert [m.role for m in first.sample.input] == ["system", "user"]
    assert first.sample.input[1].content == ITEMS[0]["question"], "the template rendered with the item"


async def test_an_adapter_run_is_offered_for_an_alias(tenant_a: Tenant, base_model: str) -> None:
    """A LoRA adapter that learnt an answer format passes a format grader the base model fails; its
    run is offered for an alias through the eval (no holder yet: promoted, and recorded), and a
    run of the base model, worse, does not take it back."""
    client = tenant_a.client
    training = await client.files.create(file=("colours.jsonl", TRAINING.encode()), purpose="fine-tune")
    job = await client.fine_tuning.jobs.create(
        model=base_model,
        training_file=training.id,
        hyperparameters={"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 10},
    )
    done = await _wait_final(tenant_a, job.id, timeout_s=900)
    assert done.status == "succeeded" and done.fine_tuned_model, done
    schema: Any = {"type": "object", "properties": {"thing": {"type": "string"}}, "required": ["thing"]}
    grader: Any = {
        "type": "string_check",
        "name": "format",
        "input": "{{sample.output_text}}",
        "reference": "COLOUR=",
        "operation": "like",
    }
    evaluation = await client.evals.create(
        data_source_config={"type": "custom", "item_schema": schema}, testing_criteria=[grader]
    )
    items = [{"item": {"thing": thing}} for thing, _ in COLOURS]

    async def run_of(model: str) -> str:
        source: Any = {
            "type": "completions",
            "model": model,
            "input_messages": {
                "type": "template",
                "template": [{"role": "user", "content": "Colour of {{item.thing}}?"}],
            },
            "sampling_params": {"max_completion_tokens": 8, "temperature": 0},
            "source": {"type": "file_content", "content": items},
        }
        run = await client.evals.runs.create(evaluation.id, data_source=source)
        assert (await _completed(tenant_a, evaluation.id, run.id)).status == "completed"
        return run.id

    base_run, adapter_run = await run_of(base_model), await run_of(done.fine_tuned_model)
    compared = (await tenant_a.http.get(f"/v1/evals/{evaluation.id}/comparison")).json()
    rates = {r["run_id"]: r["pass_rate"]["format"]["value"] for r in compared["runs"]}
    assert rates[adapter_run] > rates[base_run], compared

    alias = f"ft:colours-{evaluation.id[-6:]}"
    promote = f"/v1/evals/{evaluation.id}/promote"
    offered = await tenant_a.http.post(
        f"/v1/evals/{evaluation.id}/promote", json={"alias": alias, "run_id": adapter_run}
    )
    assert offered.status_code == 200, offered.text
    decision = offered.json()
    assert decision["promoted"] and decision["candidate"] == done.fine_tuned_model and decision["metric"] == "pass_rate"
    assert decision["candidate_score"] == 100 * rates[adapter_run]
    held = await tenant_a.http.get(f"/v1/aliases/{alias}")
    assert held.json()["model"] == done.fine_tuned_model
    kept = await tenant_a.http.post(promote, json={"alias": alias, "run_id": base_run})
    assert kept.status_code == 200 and not kept.json()["promoted"], kept.text  # the base model may, if better
