"""Stored chat completions over real PostgreSQL and the gateway's real routes: what is stored (the
request's ``store`` against the tenant's setting), listing with model and metadata filters and
cursors, metadata bounds (400 naming the field), isolation between tenants, real deletion, the
retention sweep, and the feedback history. Completions are recorded through the service the chat
route calls once the generator has answered (this tier runs no generator)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from ragtune_gateway import ids
from ragtune_gateway.repositories import stored_completions as rows
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.chat import (
    ChatCompletion,
    ChatCompletionMessage,
    ChatCompletionRequest,
    Choice,
    Citation,
    CompletionUsage,
)
from ragtune_gateway.services import completion_retention, stored_completions
from tests.fixtures.gateway import Gateway
from tests.integration.gateway.conftest import GatewayFactory

CITATION = Citation(
    index=1,
    document_id="file-abc",
    chunk_id="c1",
    vector_store_id="vs_1",
    file_id="file-abc",
    filename="handbook.txt",
    start_offset=0,
    end_offset=12,
    text="Leave policy",
    score=0.9,
    attributes={},
)


async def answer(
    runtime: GatewayRuntime,
    tenant: str,
    *,
    model: str = "base",
    store: bool | None = True,
    metadata: dict[str, str] | None = None,
    text: str = "27 days.",
    grounded: bool = False,
) -> tuple[str, bool]:
    """Records an answered request as the chat route does: (its id, whether it was stored)."""
    body = ChatCompletionRequest.model_validate(
        {
            "model": model,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "How many days of leave?"}]},
            ],
            "temperature": 0,
            "store": store,
            "metadata": metadata,
            **({"rag": {"vector_store_ids": ["vs_1"]}} if grounded else {}),
        }
    )
    completion = ChatCompletion(
        id=ids.new_id(ids.CHAT_COMPLETION),
        created=0,
        model=model,
        choices=[Choice(index=0, message=ChatCompletionMessage(content=text), finish_reason="stop")],
        usage=CompletionUsage(prompt_tokens=9, completion_tokens=3, total_tokens=12),
        citations=[CITATION] if grounded else None,
        metadata=metadata,
    )
    return completion.id, await stored_completions.record(runtime, tenant, body, "", completion)


def runtime_of(gateway: Gateway) -> GatewayRuntime:
    runtime: GatewayRuntime = gateway.app.state.runtime
    return runtime


async def test_store_follows_the_request_then_the_tenant_setting(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    runtime = runtime_of(gateway)
    tenant, _, key = await gateway.new_tenant()
    settings = await gateway.admin.get(f"/v1/admin/tenants/{tenant}/settings")
    assert settings.json() == {
        "object": "tenant.settings",
        "tenant_id": tenant,
        "store_completions": False,
        "completion_retention_days": 30,
    }
    assert (await answer(runtime, tenant, store=None))[1] is False  # off unless opted in
    assert (await answer(runtime, tenant, store=True))[1] is True
    changed = await gateway.admin.post(f"/v1/admin/tenants/{tenant}/settings", json={"store_completions": True})
    assert changed.status_code == 200 and changed.json()["store_completions"] is True
    assert changed.json()["completion_retention_days"] == 30  # what was not given stays
    assert (await answer(runtime, tenant, store=None))[1] is True
    assert (await answer(runtime, tenant, store=False))[1] is False  # the request wins
    async with gateway.client(key) as client:
        listed = await client.get("/v1/chat/completions")
    assert listed.status_code == 200 and len(listed.json()["data"]) == 2
    bad = await gateway.admin.post(f"/v1/admin/tenants/{tenant}/settings", json={"completion_retention_days": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "completion_retention_days"
    assert (await gateway.admin.post("/v1/admin/tenants/nobody/settings", json={})).status_code == 404


async def test_stored_completion_reads_back_whole(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    tenant, _, key = await gateway.new_tenant()
    completion_id, _ = await answer(runtime_of(gateway), tenant, metadata={"topic": "leave"}, grounded=True)
    async with gateway.client(key) as client:
        got = (await client.get(f"/v1/chat/completions/{completion_id}")).json()
        assert got["object"] == "chat.completion" and got["model"] == "base" and got["request_model"] == "base"
        assert got["choices"][0]["message"]["content"] == "27 days."
        assert got["usage"]["total_tokens"] == 12 and got["metadata"] == {"topic": "leave"}
        assert got["citations"][0]["text"] == "Leave policy"  # a grounded answer keeps its passages
        messages = await client.get(f"/v1/chat/completions/{completion_id}/messages", params={"limit": 1})
        page = messages.json()
        assert page["has_more"] is True and page["data"][0]["role"] == "system"
        assert page["data"][0]["id"] == f"{completion_id}-0"
        rest = await client.get(f"/v1/chat/completions/{completion_id}/messages", params={"after": page["last_id"]})
        (user,) = rest.json()["data"]
        assert user["content"] == "How many days of leave?" and user["content_parts"][0]["type"] == "text"
        desc = await client.get(f"/v1/chat/completions/{completion_id}/messages", params={"order": "desc"})
        assert [m["role"] for m in desc.json()["data"]] == ["user", "system"]
        nowhere = await client.get(f"/v1/chat/completions/{completion_id}/messages", params={"after": "x"})
        assert nowhere.status_code == 400 and nowhere.json()["error"]["param"] == "after"
    row = await rows.get(runtime_of(gateway).pool, tenant, completion_id)
    assert row is not None and row.request == {"temperature": 0.0, "stream": False, "rag": row.request["rag"]}
    assert row.adapter == "" and row.messages[0] == {"role": "system", "content": "Be brief."}


async def test_list_filters_by_model_and_metadata_in_cursor_pages(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    runtime = runtime_of(gateway)
    tenant, _, key = await gateway.new_tenant()
    made = [
        (await answer(runtime, tenant, model=model, metadata={"topic": topic, "n": str(i)}))[0]
        for i, (model, topic) in enumerate([("base", "a"), ("ft:x", "b"), ("base", "b"), ("base", "a"), ("ft:x", "a")])
    ]
    async with gateway.client(key) as client:

        async def listed(**params: str | int) -> dict[str, object]:
            reply = await client.get("/v1/chat/completions", params=params)
            assert reply.status_code == 200, reply.text
            return dict(reply.json())

        def got(page: dict[str, object]) -> list[str]:
            return [c["id"] for c in page["data"]]  # type: ignore[attr-defined]

        assert got(await listed()) == made  # oldest first by default, as OpenAI
        assert got(await listed(order="desc")) == made[::-1]
        assert got(await listed(model="ft:x")) == [made[1], made[4]]
        assert got(await listed(**{"metadata[topic]": "a"})) == [made[0], made[3], made[4]]
        assert got(await listed(**{"metadata[topic]": "a", "metadata[n]": "3"})) == [made[3]]
        assert got(await listed(model="base", **{"metadata[topic]": "b"})) == [made[2]]
        assert got(await listed(**{"metadata[topic]": "zzz"})) == []
        first = await listed(limit=2)
        assert got(first) == made[:2] and first["has_more"] is True and first["last_id"] == made[1]
        second = await listed(limit=2, after=made[1])
        assert got(second) == made[2:4] and second["has_more"] is True
        third = await listed(limit=2, after=made[3])
        assert got(third) == made[4:] and third["has_more"] is False
        assert got(await listed(order="desc", after=made[2])) == made[:2][::-1]
        unknown = await client.get("/v1/chat/completions", params={"after": "chatcmpl-nope"})
        assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "after"
        refusals: list[tuple[dict[str, str | int], str]] = [
            ({"metadata[" + "k" * 65 + "]": "v"}, "metadata[" + "k" * 64 + "]"),
            ({"metadata[k]": "v" * 513}, "metadata[k]"),
            ({f"metadata[k{i}]": "v" for i in range(17)}, "metadata"),
            ({"metadata": "k=v"}, "metadata"),
            ({"limit": 101}, "limit"),
            ({"order": "sideways"}, "order"),
        ]
        for params, param in refusals:
            refused = await client.get("/v1/chat/completions", params=params)
            assert refused.status_code == 400, (params, refused.text)
            assert refused.json()["error"]["param"] == param


async def test_metadata_bounds_are_400s_naming_the_field(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    tenant, _, key = await gateway.new_tenant()
    completion_id, _ = await answer(runtime_of(gateway), tenant)
    too_many = {f"k{i}": "v" for i in range(17)}
    messages = [{"role": "user", "content": "hi"}]
    async with gateway.client(key) as client:
        for metadata in (too_many, {"k" * 65: "v"}, {"k": "v" * 513}, {"k": 1}, {"feedback": "meh"}):
            for path, body in [
                (f"/v1/chat/completions/{completion_id}", {"metadata": metadata}),
                ("/v1/chat/completions", {"model": "base", "messages": messages, "store": True, "metadata": metadata}),
            ]:
                refused = await client.post(path, json=body)
                assert refused.status_code == 400, (path, metadata, refused.text)
                assert refused.json()["error"]["param"].startswith("metadata"), refused.json()
        # responses share the bounds (feedback is a chat completion's key only)
        refused = await client.post("/v1/responses", json={"model": "base", "input": "hi", "metadata": too_many})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "metadata"
        both = {"metadata": {"correction": "short"}, "correction": "long"}
        refused = await client.post(f"/v1/chat/completions/{completion_id}", json=both)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "correction"
        long = await client.post(f"/v1/chat/completions/{completion_id}", json={"correction": "x" * 32769})
        assert long.status_code == 400 and long.json()["error"]["param"] == "correction"
        unchanged = (await client.get(f"/v1/chat/completions/{completion_id}")).json()
    assert unchanged["metadata"] == {} and "correction" not in unchanged  # nothing half-written


async def test_another_tenant_sees_nothing(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    tenant, _, key = await gateway.new_tenant()
    _, _, other_key = await gateway.new_tenant()
    completion_id, _ = await answer(runtime_of(gateway), tenant, metadata={"topic": "a"})
    async with gateway.client(other_key) as other:
        for method, path, body in [
            ("GET", "", None),
            ("POST", "", {"metadata": {"feedback": "bad"}}),
            ("DELETE", "", None),
            ("GET", "/messages", None),
            ("GET", "/feedback", None),
        ]:
            reply = await other.request(method, f"/v1/chat/completions/{completion_id}{path}", json=body)
            assert reply.status_code == 404, (method, path, reply.text)
            assert reply.json()["error"]["code"] == "not_found"
        assert (await other.get("/v1/chat/completions")).json()["data"] == []
        cursor = await other.get("/v1/chat/completions", params={"after": completion_id})
        assert cursor.status_code == 400  # another tenant's id is no cursor either
    async with gateway.client(key) as client:
        still = (await client.get(f"/v1/chat/completions/{completion_id}")).json()
    assert still["metadata"] == {"topic": "a"}


async def test_feedback_is_kept_with_who_and_when(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    tenant, key_id, key = await gateway.new_tenant()
    completion_id, _ = await answer(runtime_of(gateway), tenant, metadata={"topic": "leave"})
    path = f"/v1/chat/completions/{completion_id}"
    long_fix = "Every employee gets 27 days of paid leave. " * 20  # past a metadata value's 512
    async with gateway.client(key) as client:
        rated = await client.post(path, json={"metadata": {"topic": "leave", "feedback": "bad", "correction": "27"}})
        assert rated.status_code == 200, rated.text
        assert rated.json()["correction"] == "27" and rated.json()["updated_at"] is not None
        fixed = await client.post(path, json={"correction": long_fix})
        assert fixed.json()["correction"] == long_fix and fixed.json()["metadata"]["feedback"] == "bad"
        # new metadata without `correction` keeps a correction given apart, drops one given in metadata
        kept = await client.post(path, json={"metadata": {"feedback": "bad"}})
        assert kept.json()["correction"] == long_fix and kept.json()["metadata"] == {"feedback": "bad"}
        short = await client.post(path, json={"metadata": {"correction": "27 days"}})
        assert short.json()["correction"] == "27 days"
        dropped = await client.post(path, json={"metadata": {"feedback": "good"}})
        assert "correction" not in dropped.json()
        cleared = await client.post(path, json={"metadata": None})
        assert cleared.json()["metadata"] == {}
        history = (await client.get(f"{path}/feedback")).json()["data"]
    assert [h["feedback"] for h in history] == ["bad", "bad", "bad", None, "good", None]
    assert [h["correction"] for h in history] == ["27", long_fix, long_fix, "27 days", None, None]
    assert {h["api_key_id"] for h in history} == {key_id}
    assert all(h["created_at"] > 0 for h in history)
    row = await rows.get(runtime_of(gateway).pool, tenant, completion_id)
    assert row is not None and row.updated_by == key_id


async def test_delete_removes_the_rows(start_gateway: GatewayFactory, gateway_database_url: str) -> None:
    gateway = await start_gateway()
    tenant, _, key = await gateway.new_tenant()
    completion_id, _ = await answer(runtime_of(gateway), tenant)
    async with gateway.client(key) as client:
        await client.post(f"/v1/chat/completions/{completion_id}", json={"metadata": {"feedback": "good"}})
        deleted = await client.delete(f"/v1/chat/completions/{completion_id}")
        assert deleted.json() == {"id": completion_id, "object": "chat.completion.deleted", "deleted": True}
        assert (await client.delete(f"/v1/chat/completions/{completion_id}")).status_code == 404
        assert (await client.get(f"/v1/chat/completions/{completion_id}")).status_code == 404
    assert await count_rows(gateway_database_url, completion_id) == (0, 0)


async def count_rows(url: str, completion_id: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        stored = await conn.execute("SELECT count(*) FROM gateway.stored_completions WHERE id = %s", (completion_id,))
        feedback = await conn.execute(
            "SELECT count(*) FROM gateway.completion_feedback WHERE completion_id = %s", (completion_id,)
        )
        return (await stored.fetchone() or (0,))[0], (await feedback.fetchone() or (0,))[0]


async def test_retention_sweep_deletes_what_is_past_the_tenant_retention(
    start_gateway: GatewayFactory, gateway_database_url: str
) -> None:
    gateway = await start_gateway(completion_retention_sweep_s=0)
    runtime = runtime_of(gateway)
    short, _, key = await gateway.new_tenant()
    forever, _, _ = await gateway.new_tenant()
    for tenant, days in ((short, 2), (forever, None)):
        reply = await gateway.admin.post(
            f"/v1/admin/tenants/{tenant}/settings", json={"completion_retention_days": days}
        )
        assert reply.status_code == 200 and reply.json()["completion_retention_days"] == days
    old_short = await insert_aged(runtime, short, days=3)
    young_short = await insert_aged(runtime, short, days=1)
    old_forever = await insert_aged(runtime, forever, days=400)
    assert await completion_retention.sweep(runtime) >= 1
    assert await count_rows(gateway_database_url, old_short) == (0, 0)
    assert await count_rows(gateway_database_url, young_short) == (1, 0)
    assert await count_rows(gateway_database_url, old_forever) == (1, 0)
    await completion_retention.sweep(runtime)  # idempotent: another replica sweeping finds nothing more
    async with gateway.client(key) as client:
        listed = await client.get("/v1/chat/completions")
    assert [c["id"] for c in listed.json()["data"]] == [young_short]


async def insert_aged(runtime: GatewayRuntime, tenant: str, days: int) -> str:
    completion_id = ids.new_id(ids.CHAT_COMPLETION)
    row = rows.StoredRow(
        id=completion_id,
        tenant_id=tenant,
        model="base",
        requested_model="base",
        adapter="",
        messages=[{"role": "user", "content": "hi"}],
        request={},
        choices=[{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        usage=None,
        citations=None,
        metadata={},
        correction=None,
        created_at=datetime.now(UTC) - timedelta(days=days),
        updated_at=None,
        updated_by=None,
    )
    assert await rows.insert(runtime.pool, row, tenant_default=False)
    return completion_id
