"""Distillations and evals over stored completions, over real PostgreSQL and the gateway's real
routes, where no trainer or generator is needed: each refusal is a 400 naming its field and leaves
nothing behind (a filter matching nothing, nothing left to train on, a teacher not allowed or not
reachable), and an eval whose data source is stored completions takes their items, refusing a
source that matches none. The whole loop with a trainer is tests/e2e/test_traffic_loop.py."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

from ragtune_gateway import ids
from ragtune_gateway.repositories import distillations as distillation_rows
from ragtune_gateway.repositories import files as file_rows
from ragtune_gateway.repositories import stored_completions as stored
from ragtune_gateway.repositories.distillations import DistillationRow, Item
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.chat import ChatCompletion, ChatCompletionMessage, ChatCompletionRequest, Choice
from ragtune_gateway.services import completion_retention, stored_completions
from tests.fixtures.gateway import Gateway
from tests.integration.gateway.conftest import GatewayFactory

FT_A = "ft:SmolLM2:a:ftjob-a"


async def traffic(runtime: GatewayRuntime, tenant: str, question: str, answer: str, **metadata: str) -> str:
    """A stored chat completion as the chat route records one; its id."""
    body = ChatCompletionRequest.model_validate(
        {
            "model": "ft:support",
            "messages": [{"role": "user", "content": question}],
            "store": True,
            "metadata": metadata,
        }
    )
    completion = ChatCompletion(
        id=ids.new_id(ids.CHAT_COMPLETION),
        created=0,
        model="base",
        choices=[Choice(index=0, message=ChatCompletionMessage(content=answer), finish_reason="stop")],
    )
    assert await stored_completions.record(runtime, tenant, body, "", completion)
    return completion.id


def runtime_of(gateway: Gateway) -> GatewayRuntime:
    runtime: GatewayRuntime = gateway.app.state.runtime
    return runtime


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refusals_name_the_field_and_leave_nothing(start_gateway: GatewayFactory) -> None:
    dead = f"http://127.0.0.1:{unused_port()}/v1"
    gateway = await start_gateway(teacher_base_urls=f"{dead}, https://teacher.invalid/v1")
    runtime = runtime_of(gateway)
    tenant, _, key = await gateway.new_tenant()
    for i in range(3):
        await traffic(runtime, tenant, f"question {i}", "answer", topic="cards")
    await traffic(runtime, tenant, "rude question", "rude answer", topic="rude", feedback="bad")

    async def refused(body: dict[str, Any], param: str) -> str:
        async with gateway.client(key) as http:
            reply = await http.post("/v1/distillations", json=body)
        assert reply.status_code == 400, reply.text
        assert str(reply.json()["error"]["param"]).startswith(param), reply.text
        return str(reply.json()["error"]["message"])

    assert "matches no" in await refused({"filter": {"metadata": {"topic": "loans"}}}, "filter")
    assert "matches no" in await refused({"filter": {"model": "ft:other"}}, "filter")
    assert "matches no" in await refused({"filter": {"created_after": 4_000_000_000}}, "filter")
    assert "Nothing is left" in await refused({"filter": {"metadata": {"topic": "rude"}}}, "filter")
    assert "Nothing is left" in await refused({"filter": {"feedback": ["bad"]}}, "filter")
    assert "Nothing is left" in await refused({"holdout_fraction": 0.9, "filter": {"limit": 1}}, "filter")
    teacher = {"model": "gpt-teacher", "base_url": "https://elsewhere.example/v1"}
    assert "not among" in await refused({"teacher": teacher}, "teacher.base_url")
    assert "cannot be reached" in await refused({"teacher": {**teacher, "base_url": dead}}, "teacher.base_url")
    await refused({"holdout_fraction": 1.5}, "holdout_fraction")
    await refused({"filter": {"feedback": ["meh"]}}, "filter.feedback[0]")
    await refused({"filter": {"metadata": {"k" * 65: "v"}}}, "filter.metadata")

    async with gateway.client(key) as http:
        assert (await http.get("/v1/files")).json()["data"] == []
        assert (await http.get("/v1/distillations")).json()["data"] == []
        missing = await http.get("/v1/distillations/distill_nothing")
        assert missing.status_code == 404 and missing.json()["error"]["param"] == "distillation_id"


async def test_an_eval_takes_stored_completions_as_items(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    runtime = runtime_of(gateway)
    tenant, _, key = await gateway.new_tenant()
    runtime.owned_models.add((tenant, FT_A))  # as the generator's ListModels would tell it
    plain = await traffic(runtime, tenant, "lost my card", "card_arrival", app="bank")
    corrected = await traffic(runtime, tenant, "card stolen", "card_arrival", app="bank")
    await traffic(runtime, tenant, "other app", "x", app="shop")
    grader = {
        "type": "string_check",
        "name": "intent",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
        "operation": "eq",
    }
    async with gateway.client(key) as http:
        update = await http.post(
            f"/v1/chat/completions/{corrected}", json={"metadata": {"app": "bank", "correction": "lost_or_stolen_card"}}
        )
        assert update.status_code == 200, update.text
        made = await http.post(
            "/v1/evals",
            json={
                "data_source_config": {"type": "stored_completions", "metadata": {"app": "bank"}},
                "testing_criteria": [grader],
            },
        )
        assert made.status_code == 200, made.text
        evaluation = made.json()
        assert evaluation["data_source_config"]["type"] == "stored_completions"
        assert evaluation["data_source_config"]["metadata"] == {"app": "bank"}
        assert "item" in evaluation["data_source_config"]["schema"]["properties"]
        logs = await http.post("/v1/evals", json={"data_source_config": {"type": "logs"}, "testing_criteria": [grader]})
        assert logs.status_code == 400 and logs.json()["error"]["param"] == "data_source_config.type"

        def source(**filters: Any) -> dict[str, Any]:
            return {
                "type": "completions",
                "model": FT_A,
                "input_messages": {"type": "item_reference", "item_reference": "item.input"},
                "sampling_params": {"temperature": 0, "max_completion_tokens": 8},
                "source": {"type": "stored_completions", **filters},
            }

        run = await http.post(f"/v1/evals/{evaluation['id']}/runs", json={"data_source": source(limit=10)})
        assert run.status_code == 200, run.text
        await http.post(f"/v1/evals/{evaluation['id']}/runs/{run.json()['id']}/cancel")
        items = await http.get(
            f"/v1/evals/{evaluation['id']}/runs/{run.json()['id']}/output_items", params={"limit": 10}
        )
        got = {i["datasource_item"]["completion_id"]: i["datasource_item"] for i in items.json()["data"]}
        assert set(got) == {plain, corrected}, "the eval's metadata keeps the other app out"
        assert got[corrected]["reference"] == "lost_or_stolen_card" and got[plain]["reference"] == "card_arrival"
        assert got[plain]["input"] == [{"role": "user", "content": "lost my card"}]

        none = await http.post(
            f"/v1/evals/{evaluation['id']}/runs", json={"data_source": source(created_after=4_000_000_000)}
        )
        assert none.status_code == 400 and none.json()["error"]["param"] == "data_source.source", none.text
        nowhere = await http.post(
            f"/v1/evals/{evaluation['id']}/runs", json={"data_source": source(distillation_id="distill_x")}
        )
        assert nowhere.status_code == 404, nowhere.text
        assert nowhere.json()["error"]["param"] == "data_source.source.distillation_id"


async def test_the_sweep_waits_while_a_distilled_file_cannot_be_rewritten(start_gateway: GatewayFactory) -> None:
    """An expired completion whose line is in an unused distilled file is not swept while the trainer
    (which holds the file) cannot be reached; one that was only held out is swept at once."""
    gateway = await start_gateway()  # its trainer address answers nothing
    runtime = runtime_of(gateway)
    tenant, _, _ = await gateway.new_tenant()
    trained = await traffic(runtime, tenant, "lost my card", "lost_or_stolen_card")
    held = await traffic(runtime, tenant, "card stolen", "lost_or_stolen_card")
    record = await file_rows.insert_file(runtime.pool, "file-distilled", tenant, "d.jsonl", "fine-tune", 10, "")
    row = DistillationRow(
        "distill_t", tenant, record.id, "d.jsonl", {}, 0.5, 0, None, {"training": 1}, datetime.now(UTC)
    )
    line = {"messages": [{"role": "user", "content": "lost my card"}]}
    await distillation_rows.insert(runtime.pool, row, [Item(trained, "train", 0, line), Item(held, "holdout")])
    async with runtime.pool.connection() as conn:
        await conn.execute(
            "UPDATE gateway.stored_completions SET created_at = now() - interval '40 days' WHERE id = ANY(%s)",
            ([trained, held],),
        )
    assert await completion_retention.sweep(runtime) == 0
    assert await stored.exists(runtime.pool, tenant, trained) and await stored.exists(runtime.pool, tenant, held)
    await distillation_rows.forget(runtime.pool, tenant, trained, {"distill_t": (None, 0)})  # as if rewritten
    assert await completion_retention.sweep(runtime) == 2
    assert await distillation_rows.holdout_ids(runtime.pool, "distill_t") == []  # only what still exists
