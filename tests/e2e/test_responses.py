"""The Responses API with ``file_search``, driven by the official ``openai`` client against the
whole stack (real retriever, real vLLM, real PostgreSQL): a grounded answer with its file search
call, results and ``file_citation`` annotations; the SSE event sequence; conversations continued
with ``previous_response_id``; retrieve, delete, input items, ``store=false``; tenant isolation;
and requests refused naming the field."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.responses import (
    Response,
    ResponseFileSearchToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseStreamEvent,
)

from tests.e2e.conftest import Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUESTION = "How many days of paid leave does an employee get per year?"
# One earlier exchange that shows the model how to cite (greedy decoding follows it).
EXAMPLE = [
    {"role": "user", "content": "Where is the IT desk?"},
    {"role": "assistant", "content": "The IT desk is in room 4.12 [1]."},
    {"role": "user", "content": QUESTION},
]


def file_search(store_id: str, **more: Any) -> list[Any]:
    return [{"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 3, **more}]


def parts(response: Response) -> tuple[ResponseFileSearchToolCall, ResponseOutputText]:
    call, message = response.output
    assert isinstance(call, ResponseFileSearchToolCall) and isinstance(message, ResponseOutputMessage)
    assert message.role == "assistant" and len(message.content) == 1
    text = message.content[0]
    assert isinstance(text, ResponseOutputText)
    return call, text


async def test_file_search_answers_with_results_and_file_citations(
    tenant_a: Tenant, handbook_store: tuple[str, str], base_model: str
) -> None:
    store_id, file_id = handbook_store
    client = tenant_a.client
    response = await client.responses.create(
        model=base_model,
        input=EXAMPLE,  # type: ignore[arg-type]
        tools=file_search(store_id),
        include=["file_search_call.results"],
        max_output_tokens=48,
        temperature=0,
    )
    assert response.object == "response" and response.id.startswith("resp_") and response.model == base_model
    assert response.status in ("completed", "incomplete") and response.output_text.strip()
    call, text = parts(response)
    assert call.status == "completed" and call.queries == [QUESTION]
    assert call.results and {(r.file_id, r.filename) for r in call.results} == {(file_id, "handbook.txt")}
    assert any("27 days" in (r.text or "") for r in call.results)
    assert text.text == response.output_text
    # the answer cites the passages as [n]; each marker became an annotation of its file, where it stood
    assert text.annotations, f"no citation in {text.text!r}"
    for annotation in text.annotations:
        assert annotation.type == "file_citation"
        assert (annotation.file_id, annotation.filename) == (file_id, "handbook.txt")
        assert 0 <= annotation.index <= len(text.text)
    assert "[1]" not in text.text
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens

    stored = await client.responses.retrieve(response.id)
    assert stored.output_text == response.output_text and parts(stored)[0].results is None  # results only if asked
    again = await client.responses.retrieve(response.id, include=["file_search_call.results"])
    assert parts(again)[0].results == call.results and parts(again)[1].annotations == text.annotations


async def test_filters_narrow_the_search(tenant_a: Tenant, handbook_store: tuple[str, str], base_model: str) -> None:
    store_id, _ = handbook_store
    response = await tenant_a.client.responses.create(
        model=base_model,
        input=QUESTION,
        tools=file_search(store_id, filters={"type": "eq", "key": "team", "value": "nobody"}),
        include=["file_search_call.results"],
        max_output_tokens=8,
        temperature=0,
    )
    call, text = parts(response)
    assert call.results == [] and text.annotations == []


async def test_stream_sends_the_responses_event_sequence(
    tenant_a: Tenant, handbook_store: tuple[str, str], base_model: str
) -> None:
    store_id, file_id = handbook_store
    stream = await tenant_a.client.responses.create(
        model=base_model,
        input=EXAMPLE,  # type: ignore[arg-type]
        tools=file_search(store_id),
        include=["file_search_call.results"],
        max_output_tokens=64,
        temperature=0,
        stream=True,
    )
    events: list[ResponseStreamEvent] = [event async for event in stream]  # type: ignore[union-attr]
    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text_events = {"response.output_text.delta", "response.output_text.annotation.added"}
    assert [k for k in kinds if k not in text_events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = next(e for e in events if e.type == "response.output_text.done")
    assert deltas.strip() and deltas == done.text
    annotations = [e.annotation for e in events if e.type == "response.output_text.annotation.added"]
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.status == "completed" and final.response.output_text == done.text
    call, text = parts(final.response)
    assert call.results and call.results[0].file_id == file_id
    assert [a.model_dump() for a in text.annotations] == [a.model_dump() for a in annotations if a]
    assert all(a.file_id == file_id for a in text.annotations)  # type: ignore[union-attr]
    created = events[0]
    assert created.type == "response.created" and created.response.id == final.response.id
    assert (await tenant_a.client.responses.retrieve(final.response.id)).output_text == done.text

    # the SDK's stream helper accumulates the same events into the same response
    async with tenant_a.client.responses.stream(
        model=base_model,
        input=EXAMPLE,  # type: ignore[arg-type]
        tools=file_search(store_id),
        max_output_tokens=64,
        temperature=0,
    ) as helper:
        async for _ in helper:
            pass
        accumulated = await helper.get_final_response()
    assert accumulated.output_text == done.text


async def test_previous_response_id_continues_the_conversation(tenant_a: Tenant, base_model: str) -> None:
    client = tenant_a.client
    first = await client.responses.create(
        model=base_model,
        input="My name is Ada Lovelace.",
        instructions="Be brief.",
        max_output_tokens=12,
        temperature=0,
    )
    second = await client.responses.create(
        model=base_model, input="What is my name?", previous_response_id=first.id, max_output_tokens=12, temperature=0
    )
    assert second.previous_response_id == first.id and second.instructions is None
    items = await client.responses.input_items.list(second.id, order="asc")
    said = [(i.role, i.content[0].text) for i in items.data]  # type: ignore[union-attr,index]
    assert said == [
        ("user", "My name is Ada Lovelace."),
        ("assistant", first.output_text),
        ("user", "What is my name?"),
    ]
    assert [i.id for i in (await client.responses.input_items.list(second.id)).data] == [
        i.id for i in reversed(items.data)
    ]  # newest first by default
    paged = await client.responses.input_items.list(second.id, order="asc", limit=1, after=items.data[0].id)
    assert [i.id for i in paged.data] == [items.data[1].id] and paged.has_more
    # the model saw the first turn: its prompt holds the first input and answer besides the new question
    alone = await client.responses.create(model=base_model, input="What is my name?", max_output_tokens=1, store=False)
    assert first.usage and second.usage and alone.usage
    assert second.usage.input_tokens >= alone.usage.input_tokens + first.usage.output_tokens + 5

    # deleting the first response leaves the conversation of the second whole
    deleted = await tenant_a.http.delete(f"/v1/responses/{first.id}")
    assert deleted.status_code == 200 and deleted.json() == {"id": first.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.delete(first.id)
    third = await client.responses.create(
        model=base_model, input="Thanks.", previous_response_id=second.id, max_output_tokens=4, temperature=0
    )
    assert len((await client.responses.input_items.list(third.id)).data) == 5
    await client.responses.delete(third.id)


async def test_store_false_is_not_kept(tenant_a: Tenant, base_model: str) -> None:
    client = tenant_a.client
    response = await client.responses.create(model=base_model, input="Hello.", store=False, max_output_tokens=4)
    assert response.output_text
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)
    refused = await tenant_a.http.post(
        "/v1/responses", json={"model": base_model, "input": "Hi.", "previous_response_id": response.id}
    )
    assert refused.status_code == 404 and refused.json()["error"]["param"] == "previous_response_id"


async def test_another_tenants_response_is_not_found(tenant_a: Tenant, tenant_b: Tenant, base_model: str) -> None:
    mine = await tenant_a.client.responses.create(model=base_model, input="Hello.", max_output_tokens=4)
    for method, path in (
        ("GET", f"/v1/responses/{mine.id}"),
        ("GET", f"/v1/responses/{mine.id}/input_items"),
        ("DELETE", f"/v1/responses/{mine.id}"),
    ):
        answer = await tenant_b.http.request(method, path)
        assert answer.status_code == 404, (method, path, answer.text)
    continued = await tenant_b.http.post(
        "/v1/responses", json={"model": base_model, "input": "Hi.", "previous_response_id": mine.id}
    )
    assert continued.status_code == 404 and continued.json()["error"]["param"] == "previous_response_id"
    assert (await tenant_a.client.responses.retrieve(mine.id)).id == mine.id  # still there for its owner


@pytest.mark.parametrize(
    ("change", "status", "param"),
    [
        ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, 400, "tools[0].type"),
        ({"tools": [{"type": "web_search"}]}, 400, "tools[0].type"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_missing"]}]}, 404, "tools[0].vector_store_ids"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["nope"]}]}, 404, "tools[0].vector_store_ids[0]"),
        (
            {"tools": [{"type": "file_search", "vector_store_ids": ["STORE"], "filters": {"type": "between"}}]},
            400,
            "tools[0].filters.type",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            400,
            "input[0].content[0].type",
        ),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}, 400, "input[0].type"),
        ({"input": ""}, 400, "input"),
        ({"include": ["reasoning.encrypted_content"]}, 400, "include[0]"),
        ({"background": True}, 400, "background"),
        ({"text": {"format": {"type": "json_object"}}}, 400, "text.format.type"),
        ({"model": "no-such-model"}, 404, "model"),
        ({"previous_response_id": "resp_missing"}, 404, "previous_response_id"),
        ({"max_output_tokens": 2**31}, 400, "max_output_tokens"),
    ],
)
async def test_bad_requests_name_the_field(
    tenant_a: Tenant,
    handbook_store: tuple[str, str],
    base_model: str,
    change: dict[str, Any],
    status: int,
    param: str,
) -> None:
    body = json.loads(
        json.dumps({"model": base_model, "input": QUESTION, **change}).replace("STORE", handbook_store[0])
    )
    answer = await tenant_a.http.post("/v1/responses", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["param"] == param, answer.text


@pytest.mark.parametrize(
    "extreme",
    [
        {"max_output_tokens": 2**31 - 1, "temperature": 0},
        {"max_output_tokens": 1, "top_p": 1e-9, "temperature": 2},
        {"max_output_tokens": 1, "metadata": {"k" * 64: "v" * 512}, "user": "u" * 256},
    ],
)
async def test_extreme_values_reach_the_model_without_5xx(
    tenant_a: Tenant, base_model: str, extreme: dict[str, Any]
) -> None:
    answer = await tenant_a.http.post("/v1/responses", json={"model": base_model, "input": "Say hi.", **extreme})
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 200 and "metadata" in extreme:
        assert answer.json()["metadata"] == extreme["metadata"]
