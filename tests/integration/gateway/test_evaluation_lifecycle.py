"""Evaluations: a per-tenant cap on queued or running ones (429 with Retry-After, counted in
PostgreSQL), and DELETE, which takes the run directory, the vector store and the files the run
made with it. The gateway runs evaluations one at a time; the test holds that turn, so the ones it
creates stay queued (nothing here can run one: there is no generator or trainer)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from ragtune_eval.rundir import RunDir
from ragtune_gateway.services.evaluation_runner import ORPHAN_AGE_S, EvaluationRunner
from tests.fixtures.gateway import Gateway
from tests.integration.gateway.conftest import GatewayFactory
from tests.integration.gateway.test_fairness import assert_openai_error

QA = "".join(
    json.dumps({"question": f"What is item {i}?", "answers": [f"item {i}"], "context": f"Item {i} is item {i}."}) + "\n"
    for i in range(4)
)


@pytest_asyncio.fixture(loop_scope="session")
async def held(start_gateway: GatewayFactory) -> AsyncIterator[tuple[Gateway, EvaluationRunner]]:
    gateway = await start_gateway(max_active_evaluations_per_tenant=1, cap_retry_after_s=7)
    runner: EvaluationRunner = gateway.app.state.evaluations
    await runner.turn.acquire()
    try:
        yield gateway, runner
    finally:
        runner.turn.release()


async def test_evaluation_cap_and_delete_cleans_up(held: tuple[Gateway, EvaluationRunner]) -> None:
    gateway, runner = held
    _, _, key = await gateway.new_tenant()
    async with gateway.client(key) as client:
        dataset = await client.post("/v1/files", files={"file": ("qa.jsonl", QA.encode())}, data={"purpose": "evals"})
        assert dataset.status_code == 200, dataset.text
        body = {"file_id": dataset.json()["id"], "train": 1, "test": 1, "arms": ["base"]}

        first = await client.post("/v1/evaluations", json=body)
        assert first.status_code == 200, first.text
        first_id = first.json()["id"]
        refused = await client.post("/v1/evaluations", json=body)
        assert assert_openai_error(refused, 429, "rate_limit_error")["code"] == "limit_reached"
        assert refused.headers["Retry-After"] == "7"
        assert sorted(p.name for p in runner.root.iterdir()) == [first_id]  # the refused one left nothing

        busy = await client.delete(f"/v1/evaluations/{first_id}")
        assert assert_openai_error(busy, 409, "invalid_request_error")["code"] == "evaluation_active"

        # what a run makes for the tenant: a vector store and uploaded contexts, named in its state
        context = await client.post("/v1/files", files={"file": ("c.txt", b"Item 0.")}, data={"purpose": "assistants"})
        store = await client.post("/v1/vector_stores", json={"name": "eval"})
        assert context.status_code == 200 and store.status_code == 200, (context.text, store.text)
        run = RunDir(runner.run_dir(first_id))
        run.state["store"] = {"id": store.json()["id"], "files": {"c0": context.json()["id"]}, "complete": True}
        run.save_state()

        assert (await client.post(f"/v1/evaluations/{first_id}/cancel")).json()["status"] == "cancelled"
        deleted = await client.delete(f"/v1/evaluations/{first_id}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"id": first_id, "object": "evaluation.deleted", "deleted": True}
        assert not runner.run_dir(first_id).exists()
        assert (await client.get(f"/v1/evaluations/{first_id}")).status_code == 404
        assert (await client.get(f"/v1/vector_stores/{store.json()['id']}")).status_code == 404
        assert (await client.get(f"/v1/files/{context.json()['id']}")).status_code == 404
        assert (await client.get(f"/v1/files/{dataset.json()['id']}")).status_code == 200  # the tenant's dataset stays
        assert (await client.delete(f"/v1/evaluations/{first_id}")).status_code == 404

        second = await client.post("/v1/evaluations", json=body)  # the place is free again
        assert second.status_code == 200, second.text
        assert (await client.post(f"/v1/evaluations/{second.json()['id']}/cancel")).status_code == 200


async def test_run_directories_without_an_evaluation_are_swept_at_start(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    root = tmp_path / "gateway" / "evaluations"
    old, young = root / "eval_gone_long_ago", root / "eval_being_created"
    for path in (old, young):
        (path / "results").mkdir(parents=True)
    stale = time.time() - 2 * ORPHAN_AGE_S
    os.utime(old, (stale, stale))
    await start_gateway()  # a gateway stopped between deleting the row and the directory
    assert not old.exists() and young.exists()
