"""Fairness between tenants: a per-key request rate (429 with Retry-After in the OpenAI shape), and
per-tenant caps counted in PostgreSQL, so every replica sees the same count: vector stores (409:
only a delete frees one) and queued or running evaluations (429: they free themselves)."""

from __future__ import annotations

import asyncio

import httpx

from tests.integration.gateway.conftest import GatewayFactory


def assert_openai_error(response: httpx.Response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_ and error["message"] and set(error) == {"message", "type", "param", "code"}
    return dict(error)


async def test_rate_limit_is_per_key(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(rate_limit_per_s=0.5, rate_limit_burst=3)
    _, _, key = await gateway.new_tenant()
    _, _, other_key = await gateway.new_tenant()
    async with gateway.client(key) as client, gateway.client(other_key) as other:
        statuses = [(await client.get("/v1/files")).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = await client.get("/v1/files")
        error = assert_openai_error(refused, 429, "rate_limit_error")
        assert error["code"] == "rate_limit_exceeded"
        assert 1 <= int(refused.headers["Retry-After"]) <= 2  # one token at 0.5/s
        assert (await other.get("/v1/files")).status_code == 200  # another key is not slowed down
    assert (await gateway.admin.get("/v1/admin/tenants")).status_code == 200  # nor is the admin


async def test_vector_store_cap_is_global_and_answers_409(start_gateway: GatewayFactory) -> None:
    first = await start_gateway(max_vector_stores_per_tenant=2)
    second = await start_gateway(max_vector_stores_per_tenant=2)
    _, _, key = await first.new_tenant()
    _, _, other_key = await first.new_tenant()
    async with first.client(key) as one, second.client(key) as two, second.client(other_key) as other:
        # concurrent creations through two replicas: exactly the cap is admitted
        tries = await asyncio.gather(*(c.post("/v1/vector_stores", json={"name": "s"}) for c in (one, two, one)))
        assert sorted(r.status_code for r in tries) == [200, 200, 409], [r.text for r in tries]
        error = assert_openai_error(next(r for r in tries if r.status_code == 409), 409, "invalid_request_error")
        assert error["code"] == "limit_reached" and "RAGTUNE_GATEWAY_MAX_VECTOR_STORES_PER_TENANT" in error["message"]
        assert (await other.post("/v1/vector_stores", json={})).status_code == 200  # another tenant has room
        kept = [r.json()["id"] for r in tries if r.status_code == 200]
        assert (await one.delete(f"/v1/vector_stores/{kept[0]}")).status_code == 200
        again = await two.post("/v1/vector_stores", json={})  # a delete frees a place
        assert again.status_code == 200, again.text
