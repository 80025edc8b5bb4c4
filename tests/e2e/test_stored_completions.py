"""Stored chat completions through the official ``openai`` client, on the whole stack: created with
``store=True`` and metadata (whole, streamed, and grounded with ``rag``, which keeps its citations),
listed by metadata and model in cursor pages, retrieved, rated and corrected by a metadata update,
their messages listed, deleted; another tenant sees none of them. Also the two divergences from
the dialect fixed beside them: no max given generates to the end, and /v1/models lists the
embedding models."""

from __future__ import annotations

import uuid

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.conftest import Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUESTION = "How many days of paid leave does every employee get per year?"


async def test_stored_completions_through_the_official_client(
    tenant_a: Tenant, tenant_b: Tenant, handbook_store: tuple[str, str], base_model: str
) -> None:
    client = tenant_a.client
    run = uuid.uuid4().hex[:12]  # this test's completions, whatever else the tenant stored
    hello: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
    question: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]
    whole = await client.chat.completions.create(
        model=base_model, messages=hello, max_tokens=16, store=True, metadata={"run": run, "kind": "whole"}
    )
    stream = await client.chat.completions.create(
        model=base_model, messages=hello, max_tokens=16, stream=True, store=True, metadata={"run": run, "kind": "sse"}
    )
    chunks = [chunk async for chunk in stream]
    streamed_id, streamed_text = chunks[0].id, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    store_id, file_id = handbook_store
    grounded = await client.chat.completions.create(
        model=base_model,
        messages=question,
        max_tokens=48,
        temperature=0,
        store=True,
        metadata={"run": run, "kind": "rag"},
        extra_body={"rag": {"vector_store_ids": [store_id]}},
    )
    unstored = await client.chat.completions.create(
        model=base_model, messages=hello, max_tokens=4, store=False, metadata={"run": run}
    )

    # listed as the client asks: metadata[key]=value, model, cursor pages (auto-paginated)
    page = await client.chat.completions.list(metadata={"run": run})
    assert [c.id for c in page.data] == [whole.id, streamed_id, grounded.id]  # oldest first; unstored absent
    assert unstored.id not in [c.id for c in page.data]
    only_rag = await client.chat.completions.list(metadata={"run": run, "kind": "rag"}, model=base_model)
    assert [c.id for c in only_rag.data] == [grounded.id]
    assert (await client.chat.completions.list(metadata={"run": run}, model="no-such-model")).data == []
    walked = [c.id async for c in client.chat.completions.list(metadata={"run": run}, limit=1, order="desc")]
    assert walked == [grounded.id, streamed_id, whole.id]

    # read back whole: the answer, the usage, the metadata, and the passages of the grounded one
    got = await client.chat.completions.retrieve(grounded.id)
    assert got.choices[0].message.content == grounded.choices[0].message.content
    assert got.usage is not None and got.usage.total_tokens == grounded.usage.total_tokens  # type: ignore[union-attr]
    assert got.metadata == {"run": run, "kind": "rag"} and got.model == base_model
    citations = (got.model_extra or {})["citations"]
    assert citations and citations[0]["file_id"] == file_id and "27 days" in " ".join(c["text"] for c in citations)
    assert (await client.chat.completions.retrieve(streamed_id)).choices[0].message.content == streamed_text
    messages = await client.chat.completions.messages.list(grounded.id)
    assert [(m.role, m.content) for m in messages.data] == [("user", QUESTION)]
    assert messages.data[0].id.startswith(grounded.id)

    # feedback: a rating and a correction, as any OpenAI client sends metadata
    feedback = {"run": run, "kind": "rag", "feedback": "bad", "correction": "27 days."}
    updated = await client.chat.completions.update(grounded.id, metadata=feedback)
    assert updated.metadata == feedback and (updated.model_extra or {})["correction"] == "27 days."
    rated = await client.chat.completions.list(metadata={"run": run, "feedback": "bad"})
    assert [c.id for c in rated.data] == [grounded.id]
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.update(whole.id, metadata={"feedback": "meh"})
    assert refused.value.param == "metadata"  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.update(whole.id, metadata={f"k{i}": "v" for i in range(17)})

    # another tenant: as if none existed
    with pytest.raises(openai.NotFoundError):
        await tenant_b.client.chat.completions.retrieve(grounded.id)
    with pytest.raises(openai.NotFoundError):
        await tenant_b.client.chat.completions.delete(grounded.id)
    assert (await tenant_b.client.chat.completions.list(metadata={"run": run})).data == []

    # deleted for real
    for completion_id in (whole.id, streamed_id, grounded.id):
        deleted = await client.chat.completions.delete(completion_id)
        assert deleted.deleted and deleted.object == "chat.completion.deleted" and deleted.id == completion_id
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.retrieve(grounded.id)
    assert (await client.chat.completions.list(metadata={"run": run})).data == []


async def test_no_max_tokens_runs_to_the_end_of_the_answer(tenant_a: Tenant, base_model: str) -> None:
    """A Responses stream without max_output_tokens ends completed (it was cut at 256 tokens and
    ended 'incomplete', which the Agents SDK's Runner.run_streamed raises on)."""
    stream = await tenant_a.client.responses.create(
        model=base_model, input="Reply with one short sentence: what colour is the sky?", stream=True, temperature=0
    )
    events = [event async for event in stream]
    assert events[-1].type == "response.completed", events[-1].type
    final = events[-1].response  # type: ignore[union-attr]
    assert final.status == "completed" and final.max_output_tokens is None and final.output_text.strip()


async def test_models_lists_the_embedding_models(tenant_a: Tenant, base_model: str) -> None:
    listed = (await tenant_a.client.models.list()).data
    assert listed[0].id == base_model  # served models first: clients that take the first one still get it
    embedding = [m for m in listed if (m.model_extra or {}).get("kind") == "embedding"]
    assert embedding and embedding[0].id == "all-MiniLM-L6-v2" and (embedding[0].model_extra or {})["is_default"]
    one = await tenant_a.client.models.retrieve(embedding[0].id)
    assert (one.model_extra or {})["default_variant"].startswith("all-MiniLM-L6-v2@")
    vectors = await tenant_a.client.embeddings.create(model=embedding[0].id, input="discoverable")
    assert len(vectors.data[0].embedding) == 384
