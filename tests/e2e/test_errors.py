"""Bad input answers 4xx in the OpenAI error shape with the parameter named; nothing half-written."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import MAX_UPLOAD_BYTES, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    return dict(body["error"])


async def test_authentication(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        assert error_of(await http.get("/v1/models"), 401)["type"] == "authentication_error"
        wrong = await http.get("/v1/models", headers={"Authorization": "Bearer rt-not-a-key"})
        assert error_of(wrong, 401)["code"] == "invalid_api_key"
        admin = await http.post("/v1/admin/tenants", json={"name": "x"}, headers={"Authorization": "Bearer rt-no"})
        error_of(admin, 401)
    client = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="rt-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()
    await client.close()


async def test_request_errors_name_the_parameter(tenant_a: Tenant, base_model: str) -> None:
    http = tenant_a.http
    malformed = await http.post(
        "/v1/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"}
    )
    assert error_of(malformed, 400)["code"] == "invalid_json"
    chat = {"model": base_model, "messages": [{"role": "user", "content": "hi"}]}
    assert (
        error_of(await http.post("/v1/chat/completions", json={**chat, "temperature": "hot"}), 400)["param"]
        == "temperature"
    )
    assert error_of(
        await http.post("/v1/chat/completions", json={**chat, "messages": [{"role": "user", "content": 5}]}), 400
    )["param"].startswith("messages[0].content")
    assert (
        error_of(await http.post("/v1/chat/completions", json={"messages": chat["messages"]}), 400)["param"] == "model"
    )
    unknown = error_of(await http.post("/v1/chat/completions", json={**chat, "model": "no-such-model"}), 404)
    assert unknown["param"] == "model" and unknown["code"] == "model_not_found"
    no_store = {**chat, "rag": {"vector_store_ids": ["vs_missing"]}}
    assert error_of(await http.post("/v1/chat/completions", json=no_store), 404)["param"] == "rag.vector_store_ids"
    bad_filter = {**chat, "rag": {"vector_store_ids": ["vs_missing"], "filter": {"$or": 3}}}
    assert error_of(await http.post("/v1/chat/completions", json=bad_filter), 400)["param"] == "rag.filter.$or"
    assert error_of(await http.get("/v1/vector_stores/vs_missing"), 404)["code"] == "not_found"
    assert error_of(await http.get("/v1/no-such-route"), 404)["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        await tenant_a.client.chat.completions.create(model="ft:nope", messages=[{"role": "user", "content": "x"}])


async def test_invalid_rag_filter_names_the_path(
    tenant_a: Tenant, handbook_store: tuple[str, str], base_model: str
) -> None:
    body = {
        "model": base_model,
        "messages": [{"role": "user", "content": "leave?"}],
        "rag": {"vector_store_ids": [handbook_store[0]], "filter": {"$or": [{"year": {"$gt": "x", "$bad": 1}}]}},
    }
    error = error_of(await tenant_a.http.post("/v1/chat/completions", json=body), 400)
    assert error["param"].startswith("rag.filter")


async def test_uploads_refused_whole(tenant_a: Tenant) -> None:
    http = tenant_a.http
    before = len((await http.get("/v1/files")).json()["data"])
    big = b"x" * (MAX_UPLOAD_BYTES + 1)
    too_big = await http.post("/v1/files", files={"file": ("big.txt", big)}, data={"purpose": "assistants"})
    assert error_of(too_big, 413)["param"] == "file"
    purpose = await http.post("/v1/files", files={"file": ("a.txt", b"abc")}, data={"purpose": "batch"})
    assert error_of(purpose, 400)["param"] == "purpose"
    missing = await http.post("/v1/files", data={"purpose": "assistants"})
    assert error_of(missing, 400)["param"] == "file"
    lines = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
    invalid = lines + b"not json\n" + lines + b'{"messages": "nope"}\n'
    report = await http.post("/v1/files", files={"file": ("train.jsonl", invalid)}, data={"purpose": "fine-tune"})
    error = error_of(report, 400)
    assert error["param"] == "file" and "line 2" in error["message"] and "line 4" in error["message"]
    assert len((await http.get("/v1/files")).json()["data"]) == before  # nothing half-written


async def test_vector_store_with_a_bad_file_is_not_created(tenant_a: Tenant) -> None:
    http = tenant_a.http
    stores_before = {s["id"] for s in (await http.get("/v1/vector_stores")).json()["data"]}
    good = (
        await http.post("/v1/files", files={"file": ("ok.txt", b"fine text")}, data={"purpose": "assistants"})
    ).json()
    bad = (
        await http.post("/v1/files", files={"file": ("bad.pdf", b"%PDF-1.4 broken")}, data={"purpose": "assistants"})
    ).json()
    created = await http.post("/v1/vector_stores", json={"name": "broken", "file_ids": [good["id"], bad["id"]]})
    assert error_of(created, 400)["param"].startswith("file_ids")
    missing = await http.post("/v1/vector_stores", json={"name": "x", "file_ids": [good["id"], "file-nope"]})
    assert error_of(missing, 404)["param"] == "file_ids[1]"
    assert {s["id"] for s in (await http.get("/v1/vector_stores")).json()["data"]} == stores_before
