"""Fairness with the real stack: concurrent SSE streams per API key (429 + Retry-After beyond the
limit, the slot back when a stream ends or its client goes away) and the per-tenant cap on queued or
running fine-tuning jobs (429 + Retry-After, counted in the trainer's shared queue). A gateway of its
own with small limits, over the package's services."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from ragtune_gateway.settings import GatewaySettings
from tests.fixtures.gateway import Gateway, serve_gateway

pytestmark = pytest.mark.asyncio(loop_scope="session")

TRAINING = "".join(
    json.dumps({"messages": [{"role": "user", "content": f"Say {w}"}, {"role": "assistant", "content": w}]}) + "\n"
    for w in ("one", "two", "three", "four")
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def strict(gateway_settings: GatewaySettings) -> AsyncIterator[Gateway]:
    settings = gateway_settings.model_copy(
        update={"max_streams_per_key": 1, "max_active_jobs_per_tenant": 1, "cap_retry_after_s": 9}
    )
    async with serve_gateway(settings) as gateway:
        yield gateway


def _chat(model: str, max_tokens: int) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Count from one to one hundred in words."}],
        "max_tokens": max_tokens,
        "stream": True,
    }


async def _stream_status(client: httpx.AsyncClient, model: str) -> httpx.Response:
    async with client.stream("POST", "/v1/chat/completions", json=_chat(model, 4)) as response:
        await response.aread()
        return response


async def test_one_stream_per_key(strict: Gateway, base_model: str) -> None:
    _, _, key = await strict.new_tenant()
    _, _, other_key = await strict.new_tenant()
    async with strict.client(key) as client, strict.client(other_key) as other:
        async with client.stream("POST", "/v1/chat/completions", json=_chat(base_model, 200)) as first:
            assert first.status_code == 200
            lines = first.aiter_lines()
            assert (await anext(lines)).startswith("data: ")  # streaming now

            second = await _stream_status(client, base_model)
            assert second.status_code == 429
            assert second.json()["error"]["type"] == "rate_limit_error"
            assert second.json()["error"]["code"] == "too_many_streams"
            assert int(second.headers["Retry-After"]) >= 1
            assert (await _stream_status(other, base_model)).status_code == 200  # another key streams meanwhile
        # the client went away mid-stream: its slot comes back
        for _ in range(100):
            if (third := await _stream_status(client, base_model)).status_code != 429:
                break
            await asyncio.sleep(0.2)
        assert third.status_code == 200, third.text
        assert (await _stream_status(client, base_model)).status_code == 200  # and after a whole stream too


async def test_queued_or_running_jobs_per_tenant(strict: Gateway, base_model: str) -> None:
    _, _, key = await strict.new_tenant()
    async with strict.client(key) as client:
        uploaded = await client.post(
            "/v1/files", files={"file": ("t.jsonl", TRAINING.encode())}, data={"purpose": "fine-tune"}
        )
        assert uploaded.status_code == 200, uploaded.text
        body = {"model": base_model, "training_file": uploaded.json()["id"], "hyperparameters": {"n_epochs": 1}}
        first = await client.post("/v1/fine_tuning/jobs", json=body)
        assert first.status_code == 200, first.text
        try:
            refused = await client.post("/v1/fine_tuning/jobs", json=body)
            assert refused.status_code == 429, refused.text
            error = refused.json()["error"]
            assert error["code"] == "limit_reached" and "RAGTUNE_GATEWAY_MAX_ACTIVE_JOBS_PER_TENANT" in error["message"]
            assert refused.headers["Retry-After"] == "9"
        finally:
            await client.post(f"/v1/fine_tuning/jobs/{first.json()['id']}/cancel")
        for _ in range(300):  # a running job stops within seconds
            job = (await client.get(f"/v1/fine_tuning/jobs/{first.json()['id']}")).json()
            if job["status"] == "cancelled":
                break
            await asyncio.sleep(0.2)
        second = await client.post("/v1/fine_tuning/jobs", json=body)  # the place is free again
        assert second.status_code == 200, second.text
        await client.post(f"/v1/fine_tuning/jobs/{second.json()['id']}/cancel")
