"""The main flows with the official `openai` client: vector stores, files, search, and chat
completions grounded in them, streamed and not."""

from __future__ import annotations

import json

import httpx
import pytest
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from ragtune_gateway.settings import GatewaySettings
from tests.e2e.conftest import HANDBOOK, Tenant
from tests.fixtures.gateway import serve_gateway

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUESTION = "How many days of paid leave does an employee get per year?"


async def test_vector_store_files_and_search(tenant_a: Tenant, handbook_store: tuple[str, str]) -> None:
    store_id, file_id = handbook_store
    client = tenant_a.client
    store = await client.vector_stores.retrieve(store_id)
    assert store.name == "handbook" and store.file_counts.completed == 1
    assert store_id in [s.id for s in (await client.vector_stores.list()).data]
    listed = await client.vector_stores.files.list(store_id)
    assert [f.id for f in listed.data] == [file_id] and listed.data[0].status == "completed"
    assert (await client.files.retrieve(file_id)).filename == "handbook.txt"
    assert (await client.files.content(file_id)).content == HANDBOOK.encode()

    page = await client.vector_stores.search(store_id, query="paid leave days", max_num_results=3)
    assert page.data and page.data[0].file_id == file_id and page.data[0].filename == "handbook.txt"
    assert "27 days" in " ".join(r.content[0].text for r in page.data)


async def test_search_filters(tenant_a: Tenant) -> None:
    client = tenant_a.client
    store = await client.vector_stores.create(name="filtered")
    try:
        for name, year in (("old.txt", 1999), ("new.txt", 2021)):
            f = await client.files.create(file=(name, f"The office opened in {year}.".encode()), purpose="assistants")
            await client.vector_stores.files.create(store.id, file_id=f.id, attributes={"year": year})
        page = await client.vector_stores.search(
            store.id, query="office opened", filters={"type": "gte", "key": "year", "value": 2000}
        )
        assert [r.filename for r in page.data] == ["new.txt"]
        assert page.data[0].attributes == {"year": 2021}
        bad = await tenant_a.http.post(
            f"/v1/vector_stores/{store.id}/search", json={"query": "x", "filters": {"year": {"$between": [1, 2]}}}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"].startswith("filters")
    finally:
        await client.vector_stores.delete(store.id)


async def test_rag_chat_returns_grounded_citations(
    tenant_a: Tenant, handbook_store: tuple[str, str], base_model: str
) -> None:
    store_id, file_id = handbook_store
    response = await tenant_a.client.chat.completions.create(
        model=base_model,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=32,
        temperature=0,
        extra_body={"rag": {"vector_store_ids": [store_id], "top_k": 3}},
    )
    assert response.choices[0].message.content
    assert response.usage is not None and response.usage.completion_tokens > 0
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    citations = response.model_dump()["citations"]
    assert citations and citations[0]["index"] == 1
    for c in citations:
        # the quoted text is really in the source, at the offsets given
        assert c["file_id"] == file_id and c["vector_store_id"] == store_id and c["filename"] == "handbook.txt"
        assert c["text"] and HANDBOOK[c["start_offset"] : c["end_offset"]] == c["text"]
        assert c["chunk_id"].startswith(file_id) and isinstance(c["score"], float)
    assert any("27 days" in c["text"] for c in citations)


async def test_streaming_rag_chat_carries_citations_and_usage(
    tenant_a: Tenant, handbook_store: tuple[str, str], base_model: str
) -> None:
    store_id, _ = handbook_store
    stream = await tenant_a.client.chat.completions.create(
        model=base_model,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"rag": {"vector_store_ids": [store_id], "top_k": 2}},
    )
    chunks = [chunk async for chunk in stream]
    first = chunks[0].model_dump()
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert first["citations"] and HANDBOOK[first["citations"][0]["start_offset"] :].startswith(
        first["citations"][0]["text"]
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes and finishes[-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


async def test_plain_chat_without_rag(tenant_a: Tenant, base_model: str) -> None:
    response = await tenant_a.client.chat.completions.create(
        model=base_model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0
    )
    assert response.object == "chat.completion" and response.model == base_model
    assert "citations" not in response.model_dump()


async def test_health_ready_metrics_openapi(gateway_url: str, base_model: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["checks"]) == {"database", "retriever", "generator", "trainer"}
        metrics = (await http.get("/metrics")).text
        assert 'ragtune_gateway_requests_total{method="GET",route="/v1/models",status="200"}' in metrics
        assert "ragtune_gateway_request_seconds_bucket" in metrics
        assert "ragtune_gateway_tokens" in metrics and "ragtune_gateway_retrieval_seconds" in metrics
        spec = (await http.get("/openapi.json")).json()
        assert "/v1/chat/completions" in spec["paths"]


async def test_responses_validate_as_the_official_client_types(
    tenant_a: Tenant, handbook_store: tuple[str, str], base_model: str
) -> None:
    """The bodies, read raw and validated (not just constructed, as the SDK does) against the
    official client's types: models, a grounded completion, and every chunk of its stream."""
    listed = (await tenant_a.http.get("/v1/models")).json()
    assert listed["object"] == "list"
    models = [Model.model_validate(m) for m in listed["data"]]
    assert base_model in [m.id for m in models]
    one = Model.model_validate((await tenant_a.http.get(f"/v1/models/{base_model}")).json())
    assert one.owned_by == "ragtune" and (one.model_extra or {}).get("max_model_len")
    assert (await tenant_a.client.models.retrieve(base_model)).id == base_model

    store_id, _ = handbook_store
    body = {
        "model": base_model,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 8,
        "temperature": 0,
        "rag": {"vector_store_ids": [store_id], "top_k": 2},
    }
    whole = await tenant_a.http.post("/v1/chat/completions", json=body)
    completion = ChatCompletion.model_validate(whole.json())
    assert completion.id.startswith("chatcmpl-") and completion.choices[0].message.role == "assistant"
    assert (completion.model_extra or {})["citations"][0]["vector_store_id"] == store_id

    stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    async with tenant_a.http.stream("POST", "/v1/chat/completions", json=stream_body) as streamed:
        assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: ") :] async for line in streamed.aiter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(event) for event in events[:-1]]
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert "citations" in (chunks[0].model_extra or {}) and "citations" not in (chunks[1].model_extra or {})
    assert all(c.usage is None for c in chunks[:-1]) and chunks[-1].usage is not None and not chunks[-1].choices


async def test_a_stream_cut_short_ends_with_an_error_event(
    tenant_a: Tenant, gateway_settings: GatewaySettings, base_model: str
) -> None:
    """A failure after the first event cannot be an HTTP status any more: the stream ends with the
    error's body as its last event, and no ``[DONE]``. Here the generation deadline of a second
    gateway (same database and services, a few seconds' deadline) expires mid-answer."""
    short = gateway_settings.model_copy(update={"generate_timeout_s": 4.0})
    body = {
        "model": base_model,
        "messages": [{"role": "user", "content": "Count upward from 1, one number per line, and never stop."}],
        "max_tokens": 900,  # the context is 1024 tokens: far more than 4 s of generation here
        "temperature": 0,
        "stream": True,
    }
    async with (
        serve_gateway(short) as gateway,
        gateway.client(tenant_a.key) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as streamed,
    ):
        assert streamed.status_code == 200, await streamed.aread()
        events = [line[len("data: ") :] async for line in streamed.aiter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in events
    chunks = [ChatCompletionChunk.model_validate_json(event) for event in events[:-1]]
    assert chunks and chunks[0].choices[0].delta.role == "assistant"
    assert json.loads(events[-1]) == {
        "error": {
            "message": "The generator service did not answer in time.",
            "type": "api_error",
            "param": None,
            "code": "deadline_exceeded",
        }
    }
