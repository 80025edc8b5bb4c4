"""Evaluations through the gateway's routes: a per-tenant cap on queued or running ones (429 with
Retry-After, counted in PostgreSQL); DELETE, which takes the evaluation's record and files and the
vector store and files the run made; and the worker that gives up on an evaluation whose workers
keep dying. The gateways here run no evaluation unless a test asks for a worker (there is no
generator or trainer to run one with)."""

from __future__ import annotations

import asyncio
import json

import psycopg
from psycopg.types.json import Jsonb

from tests.integration.gateway.conftest import GatewayFactory
from tests.integration.gateway.test_fairness import assert_openai_error

QA = "".join(
    json.dumps({"question": f"What is item {i}?", "answers": [f"item {i}"], "context": f"Item {i} is item {i}."}) + "\n"
    for i in range(4)
)


async def test_evaluation_cap_and_delete_cleans_up(start_gateway: GatewayFactory, gateway_database_url: str) -> None:
    gateway = await start_gateway(max_active_evaluations_per_tenant=1, cap_retry_after_s=7, evaluation_workers=0)
    _, _, key = await gateway.new_tenant()
    async with (
        gateway.client(key) as client,
        await psycopg.AsyncConnection.connect(gateway_database_url, autocommit=True) as db,
    ):
        dataset = await client.post("/v1/files", files={"file": ("qa.jsonl", QA.encode())}, data={"purpose": "evals"})
        assert dataset.status_code == 200, dataset.text
        body = {"file_id": dataset.json()["id"], "train": 1, "test": 1, "arms": ["base"]}

        first = await client.post("/v1/evaluations", json=body)
        assert first.status_code == 200, first.text
        first_id = first.json()["id"]
        refused = await client.post("/v1/evaluations", json=body)
        assert assert_openai_error(refused, 429, "rate_limit_error")["code"] == "limit_reached"
        assert refused.headers["Retry-After"] == "7"
        cur = await db.execute(
            "SELECT evaluation_id, name, content FROM gateway.evaluation_files f JOIN gateway.evaluations e"
            " ON e.id = f.evaluation_id WHERE e.tenant_id = (SELECT tenant_id FROM gateway.evaluations WHERE id = %s)",
            (first_id,),
        )
        assert await cur.fetchall() == [(first_id, "dataset.jsonl", QA.encode())], "its own copy; the refused one: none"

        busy = await client.delete(f"/v1/evaluations/{first_id}")
        assert assert_openai_error(busy, 409, "invalid_request_error")["code"] == "evaluation_active"

        # what a run makes for the tenant: a vector store and uploaded contexts, named in its state
        context = await client.post("/v1/files", files={"file": ("c.txt", b"Item 0.")}, data={"purpose": "assistants"})
        store = await client.post("/v1/vector_stores", json={"name": "eval"})
        assert context.status_code == 200 and store.status_code == 200, (context.text, store.text)
        made = {"store": {"id": store.json()["id"], "files": {"c0": context.json()["id"]}, "complete": True}}
        await db.execute("UPDATE gateway.evaluations SET state = %s WHERE id = %s", (Jsonb(made), first_id))

        assert (await client.post(f"/v1/evaluations/{first_id}/cancel")).json()["status"] == "cancelled"
        again = await client.post(f"/v1/evaluations/{first_id}/cancel")
        assert assert_openai_error(again, 400, "invalid_request_error")["param"] == "evaluation_id"
        deleted = await client.delete(f"/v1/evaluations/{first_id}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"id": first_id, "object": "evaluation.deleted", "deleted": True}
        cur = await db.execute("SELECT count(*) FROM gateway.evaluation_files WHERE evaluation_id = %s", (first_id,))
        assert await cur.fetchone() == (0,)
        assert (await client.get(f"/v1/evaluations/{first_id}")).status_code == 404
        assert (await client.get(f"/v1/vector_stores/{store.json()['id']}")).status_code == 404
        assert (await client.get(f"/v1/files/{context.json()['id']}")).status_code == 404
        assert (await client.get(f"/v1/files/{dataset.json()['id']}")).status_code == 200  # the tenant's dataset stays
        assert (await client.delete(f"/v1/evaluations/{first_id}")).status_code == 404

        second = await client.post("/v1/evaluations", json=body)  # the place is free again
        assert second.status_code == 200, second.text
        assert (await client.post(f"/v1/evaluations/{second.json()['id']}/cancel")).status_code == 200


async def test_a_worker_gives_up_on_an_evaluation_whose_workers_keep_dying(start_gateway: GatewayFactory) -> None:
    serving = await start_gateway(evaluation_workers=0)
    _, _, key = await serving.new_tenant()
    async with serving.client(key) as client:
        dataset = await client.post("/v1/files", files={"file": ("qa.jsonl", QA.encode())}, data={"purpose": "evals"})
        body = {"file_id": dataset.json()["id"], "train": 1, "test": 1, "arms": ["base"]}
        created = (await client.post("/v1/evaluations", json=body)).json()
        pool = serving.app.state.runtime.pool
        async with pool.connection() as conn:  # claimed and lost by five workers that were killed
            await conn.execute(
                "UPDATE gateway.evaluations SET status = 'running', attempts = 5, lease_owner = 'gone',"
                " lease_expires_at = now() - interval '1 second' WHERE id = %s",
                (created["id"],),
            )
        await start_gateway(evaluation_workers=1, evaluation_poll_s=0.2, evaluation_max_attempts=5)
        for _ in range(150):
            found = (await client.get(f"/v1/evaluations/{created['id']}")).json()
            if found["status"] != "running":
                break
            await asyncio.sleep(0.2)
    assert found["status"] == "failed"
    assert found["error"]["message"] == "Stopped after 5 attempts whose worker died while running it."
