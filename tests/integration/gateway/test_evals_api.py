"""``/v1/evals`` through the official ``openai`` client, on a gateway with a worker and no model:
runs of the ``jsonl`` kind grade the samples they are given (string_check, text_similarity), item
by item, durably; bad requests name their field and store nothing; graders that would run the
caller's code are refused; tenants see only their own evals."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import pytest

from ragtune_gateway.worker import run as run_worker
from tests.integration.gateway.conftest import GatewayFactory

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "label": {"type": "string"}},
    "required": ["text", "label"],
}
CRITERIA: list[Any] = [
    {
        "type": "string_check",
        "name": "exact label",
        "input": "{{sample.output_text}}",
        "reference": "{{item.label}}",
        "operation": "eq",
    },
    {
        "type": "text_similarity",
        "name": "close",
        "input": "{{sample.output_text}}",
        "reference": "{{item.label}}",
        "evaluation_metric": "fuzzy_match",
        "pass_threshold": 0.5,
    },
]
ROWS = [
    ({"text": "I lost my card", "label": "lost_card"}, "lost_card"),  # pass, pass
    ({"text": "where is my refund", "label": "refund"}, "refunds"),  # fail eq, pass fuzzy
    ({"text": "hello", "label": "greeting"}, "card_arrival"),  # fail, fail
]


def _client(url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


async def _finished(client: openai.AsyncOpenAI, eval_id: str, run_id: str) -> Any:
    for _ in range(200):
        run = await client.evals.runs.retrieve(run_id, eval_id=eval_id)
        if run.status not in ("queued", "in_progress"):
            return run
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish")


async def test_a_jsonl_run_grades_the_given_samples(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(evaluation_poll_s=0.2)
    _, _, key = await gateway.new_tenant()
    _, _, other_key = await gateway.new_tenant()
    client, other = _client(gateway.url, key), _client(gateway.url, other_key)

    created = await client.evals.create(
        name="intents",
        metadata={"team": "support"},
        data_source_config={"type": "custom", "item_schema": SCHEMA, "include_sample_schema": True},
        testing_criteria=CRITERIA,
    )
    assert created.name == "intents" and created.metadata == {"team": "support"}
    schema: Any = created.data_source_config.schema_
    assert schema["properties"]["item"] == SCHEMA
    assert [c.name for c in created.testing_criteria] == ["exact label", "close"]  # type: ignore[union-attr]

    content = [{"item": item, "sample": {"output_text": answer}} for item, answer in ROWS]
    given: Any = {"type": "jsonl", "source": {"type": "file_content", "content": content}}
    run = await client.evals.runs.create(created.id, name="given", data_source=given)
    assert run.status in ("queued", "in_progress") and run.eval_id == created.id
    done = await _finished(client, created.id, run.id)
    assert done.status == "completed", done
    assert (done.result_counts.total, done.result_counts.passed, done.result_counts.failed) == (3, 1, 2)
    by_name = {r.testing_criteria: (r.passed, r.failed) for r in done.per_testing_criteria_results}
    assert by_name == {"exact label": (1, 2), "close": (2, 1)}

    items = [i async for i in client.evals.runs.output_items.list(run.id, eval_id=created.id, limit=2)]
    assert [i.datasource_item_id for i in items] == [0, 1, 2], "every item, across pages, in order"
    assert [i.status for i in items] == ["pass", "fail", "fail"]
    assert items[1].datasource_item == ROWS[1][0]
    assert [(r.name, r.passed) for r in items[1].results] == [("exact label", False), ("close", True)]
    assert 0.5 < items[1].results[1].score < 1
    failed = [i.id async for i in client.evals.runs.output_items.list(run.id, eval_id=created.id, status="fail")]
    assert failed == [items[1].id, items[2].id]
    one = await client.evals.runs.output_items.retrieve(items[0].id, eval_id=created.id, run_id=run.id)
    assert one.results[0].passed and one.datasource_item == ROWS[0][0]

    # another tenant sees none of it
    with pytest.raises(openai.NotFoundError):
        await other.evals.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await other.evals.runs.retrieve(run.id, eval_id=created.id)
    assert [e.id async for e in other.evals.list()] == []

    updated = await client.evals.update(created.id, name="intents v2")
    assert updated.name == "intents v2" and updated.metadata == {"team": "support"}
    assert [r.id async for r in client.evals.runs.list(created.id)] == [run.id]
    deleted = await client.evals.delete(created.id)
    assert deleted.deleted and deleted.eval_id == created.id
    with pytest.raises(openai.NotFoundError):
        await client.evals.runs.retrieve(run.id, eval_id=created.id)


async def test_bad_evals_and_runs_name_the_field_and_store_nothing(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(evaluation_workers=0)
    _, _, key = await gateway.new_tenant()
    client = _client(gateway.url, key)
    config: Any = {"type": "custom", "item_schema": SCHEMA}
    python = {"type": "python", "name": "mine", "source": "import os; os.system('rm -rf /')"}
    bad_evals: list[tuple[dict[str, Any], str]] = [
        ({"data_source_config": config, "testing_criteria": [python]}, "testing_criteria[0].type"),
        ({"data_source_config": {"type": "custom", "item_schema": {"type": 7}}, "testing_criteria": CRITERIA},
         "data_source_config.item_schema"),
        ({"data_source_config": {"type": "logs"}, "testing_criteria": CRITERIA}, "data_source_config.type"),
        ({"data_source_config": {"type": "custom", "item_schema": {"$ref": "https://example.com/s.json"}},
          "testing_criteria": CRITERIA}, "data_source_config.item_schema"),
        ({"data_source_config": config, "testing_criteria": [CRITERIA[0], CRITERIA[0]]}, "testing_criteria[1].name"),
        ({"data_source_config": config, "testing_criteria": [{**CRITERIA[0], "input": "{{env.HOME}}"}]},
         "testing_criteria[0].input"),
        ({"data_source_config": config, "testing_criteria": [{**CRITERIA[1], "evaluation_metric": "meteor"}]},
         "testing_criteria[0].evaluation_metric"),
    ]  # fmt: skip
    for body, param in bad_evals:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.evals.create(**body)
        assert refused.value.param == param, (body, refused.value.message)
    with pytest.raises(openai.BadRequestError) as python_refused:
        await client.evals.create(data_source_config=config, testing_criteria=[python])  # type: ignore[list-item]
    assert "run code sent by the caller" in python_refused.value.message
    assert [e.id async for e in client.evals.list()] == [], "nothing stored"

    created = await client.evals.create(data_source_config=config, testing_criteria=CRITERIA)
    good = {"item": {"text": "a", "label": "b"}, "sample": {"output_text": "b"}}
    bad_runs: list[tuple[dict[str, Any], str]] = [
        ({"type": "jsonl", "source": {"type": "file_content", "content": [good, {"item": {"text": "a"}}]}},
         "data_source.source.content[1].item"),
        ({"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"text": "a", "label": "b"}}]}},
         "data_source.source (item 0)"),
        ({"type": "completions", "source": {"type": "file_content", "content": [good]}}, "data_source.model"),
        ({"type": "jsonl", "source": {"type": "file_id", "id": "file-nope"}}, "data_source.source.id"),
        ({"type": "jsonl", "source": {"type": "stored_completions"}}, "data_source.source.type"),
    ]  # fmt: skip
    for source, param in bad_runs:
        with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as refused_run:
            await client.evals.runs.create(created.id, data_source=source)  # type: ignore[arg-type]
        assert refused_run.value.body["param"] == param, (source, refused_run.value.message)  # type: ignore[index]
    assert [r.id async for r in client.evals.runs.list(created.id)] == [], "nothing stored"
    broken: Any = {"type": "custom", "item_schema": {"properties": {"text": {"$ref": "#/nowhere"}}}}
    unusable = await client.evals.create(data_source_config=broken, testing_criteria=CRITERIA)
    single: Any = {"type": "jsonl", "source": {"type": "file_content", "content": [good]}}
    with pytest.raises(openai.BadRequestError) as unresolved:
        await client.evals.runs.create(unusable.id, data_source=single)
    assert "cannot be applied" in unresolved.value.message

    # a run of a file: line-numbered errors; cancel holds; a cancelled run stays cancelled
    lines = b'{"item": {"text": "a", "label": "b"}, "sample": {"output_text": "b"}}\n{"item": 3}\n'
    upload = await client.files.create(file=("rows.jsonl", lines), purpose="evals")
    with pytest.raises(openai.BadRequestError) as line_error:
        await client.evals.runs.create(
            created.id, data_source={"type": "jsonl", "source": {"type": "file_id", "id": upload.id}}
        )
    assert "Line 2" in line_error.value.message
    one: Any = {"type": "jsonl", "source": {"type": "file_content", "content": [good]}}
    queued = await client.evals.runs.create(created.id, data_source=one)
    cancelled = await client.evals.runs.cancel(queued.id, eval_id=created.id)
    assert cancelled.status == "canceled"
    with pytest.raises(openai.BadRequestError):
        await client.evals.runs.cancel(queued.id, eval_id=created.id)
    removed = await client.evals.runs.delete(queued.id, eval_id=created.id)
    assert removed.deleted and removed.run_id == queued.id


async def test_the_comparison_pairs_runs_on_their_shared_items(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(evaluation_poll_s=0.2)
    _, _, key = await gateway.new_tenant()
    client = _client(gateway.url, key)
    config: Any = {"type": "custom", "item_schema": SCHEMA}
    created = await client.evals.create(data_source_config=config, testing_criteria=[CRITERIA[0]])
    items = [{"text": f"message {i}", "label": f"intent {i % 3}"} for i in range(30)]

    async def graded(right: int, name: str) -> str:
        """A run whose first ``right`` answers are the label (given in another order than the items)."""
        rows = [
            {"item": it, "sample": {"output_text": it["label"] if i < right else "wrong"}} for i, it in enumerate(items)
        ]
        source: Any = {"type": "jsonl", "source": {"type": "file_content", "content": list(reversed(rows))}}
        run = await client.evals.runs.create(created.id, name=name, data_source=source)
        assert (await _finished(client, created.id, run.id)).status == "completed"
        return run.id

    weak, strong, same = await graded(5, "weak"), await graded(28, "strong"), await graded(28, "same")
    http = gateway.client(key)
    reply = await http.get(f"/v1/evals/{created.id}/comparison")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [r["run_id"] for r in body["runs"]] == [weak, strong, same]
    assert [round(r["pass_rate"]["exact label"]["value"], 3) for r in body["runs"]] == [0.167, 0.933, 0.933]
    pairs = {(c["baseline"], c["candidate"]): c for c in body["comparisons"]}
    assert pairs[(weak, strong)]["significant"] and pairs[(weak, strong)]["items"] == 30
    assert pairs[(weak, strong)]["discordant"] == [0, 23]
    assert not pairs[(strong, same)]["significant"], "identical grades: no detectable difference"
    assert "better than weak by 76.7 points" in body["recommendation"]
    assert "no detectable difference from same" in body["recommendation"]
    only = await http.get(f"/v1/evals/{created.id}/comparison", params={"run_ids": [strong, weak]})
    assert [r["run_id"] for r in only.json()["runs"]] == [strong, weak]
    missing = await http.get(f"/v1/evals/{created.id}/comparison", params={"run_ids": ["evalrun_nope"]})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "run_id"
    await http.aclose()


async def test_a_worker_without_http_runs_what_serving_replicas_queue(
    start_gateway: GatewayFactory, gateway_database_url: str, tmp_path: Path
) -> None:
    """Serving replicas with no worker of their own queue runs; ``ragtune-gateway-worker`` (its
    ``run``) claims and finishes them, and gives nothing back half-done when stopped."""
    serving = await start_gateway(evaluation_workers=0)
    _, _, key = await serving.new_tenant()
    client = _client(serving.url, key)
    config: Any = {"type": "custom", "item_schema": SCHEMA}
    created = await client.evals.create(data_source_config=config, testing_criteria=[CRITERIA[0]])
    content = [{"item": item, "sample": {"output_text": answer}} for item, answer in ROWS]
    source: Any = {"type": "jsonl", "source": {"type": "file_content", "content": content}}
    run = await client.evals.runs.create(created.id, data_source=source)
    await asyncio.sleep(1)
    assert (await client.evals.runs.retrieve(run.id, eval_id=created.id)).status == "queued", "nobody runs it yet"

    stop = asyncio.Event()
    settings = serving.app.state.runtime.settings.model_copy(
        update={"evaluation_workers": 1, "evaluation_poll_s": 0.2, "state_dir": tmp_path / "worker"}
    )
    worker = asyncio.create_task(run_worker(settings, stop))
    try:
        done = await _finished(client, created.id, run.id)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
    assert done.status == "completed" and done.result_counts.passed == 1
