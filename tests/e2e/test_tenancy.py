"""Tenant B can neither list, read, search, use, change nor delete tenant A's stores and files,
and each refusal reads exactly as for an object that does not exist. "Change" covers every mutating
route: adding a file (B's own or A's) to A's store, removing A's file from it, deleting the store
and deleting the file; A's store holds exactly the same files afterwards."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")


def refusal(response: httpx.Response, ident: str) -> dict[str, Any]:
    assert response.status_code == 404, response.text
    error = dict(response.json()["error"])
    error["message"] = error["message"].replace(ident, "<id>")
    return error


async def test_stores_and_files_are_invisible_to_another_tenant(
    tenant_a: Tenant, tenant_b: Tenant, handbook_store: tuple[str, str], base_model: str
) -> None:
    store_id, file_id = handbook_store
    a, b = tenant_a.http, tenant_b.http
    assert store_id not in {s["id"] for s in (await b.get("/v1/vector_stores")).json()["data"]}
    assert file_id not in {f["id"] for f in (await b.get("/v1/files")).json()["data"]}
    missing_store, missing_file = "vs_" + "0" * 24, "file-" + "0" * 24
    chat = {"model": base_model, "messages": [{"role": "user", "content": "leave?"}], "max_tokens": 4}
    own = (await b.post("/v1/vector_stores", json={"name": "mine"})).json()["id"]
    own_file = (
        await b.post("/v1/files", files={"file": ("b.txt", b"Tenant B's own note.")}, data={"purpose": "assistants"})
    ).json()["id"]
    a_files_before = sorted(f["id"] for f in (await a.get(f"/v1/vector_stores/{store_id}/files")).json()["data"])
    try:
        store_calls = [
            ("GET", "/v1/vector_stores/{s}", None),
            ("GET", "/v1/vector_stores/{s}/files", None),
            ("GET", "/v1/vector_stores/{s}/files/{f}", None),
            ("POST", "/v1/vector_stores/{s}/search", {"query": "leave"}),
            ("POST", "/v1/chat/completions", {**chat, "rag": {"vector_store_ids": ["{s}"]}}),
            ("POST", "/v1/vector_stores/{s}/files", {"file_id": own_file}),  # B's file into A's store
            ("POST", "/v1/vector_stores/{s}/files", {"file_id": file_id}),  # A's file into A's store, by B
            ("DELETE", "/v1/vector_stores/{s}/files/{f}", None),
            ("DELETE", "/v1/vector_stores/{s}", None),
        ]
        for method, path, body in store_calls:
            for target in (store_id, missing_store):
                url = path.format(s=target, f=file_id)
                json_body = None if body is None else _fill(body, target)
                got = refusal(await b.request(method, url, json=json_body), target)
                if target == store_id:
                    theirs = got
                else:
                    assert got == theirs, (method, path)
        for method, path in (("GET", "/v1/files/{f}"), ("GET", "/v1/files/{f}/content"), ("DELETE", "/v1/files/{f}")):
            theirs = refusal(await b.request(method, path.format(f=file_id)), file_id)
            assert theirs == refusal(await b.request(method, path.format(f=missing_file)), missing_file)
        attach = refusal(await b.post(f"/v1/vector_stores/{own}/files", json={"file_id": file_id}), file_id)
        assert attach == refusal(
            await b.post(f"/v1/vector_stores/{own}/files", json={"file_id": missing_file}), missing_file
        )
    finally:
        await b.delete(f"/v1/vector_stores/{own}")
        await b.delete(f"/v1/files/{own_file}")
    # and A still has everything
    assert (await a.get(f"/v1/vector_stores/{store_id}")).status_code == 200
    assert (await a.get(f"/v1/files/{file_id}")).status_code == 200
    assert (await a.get(f"/v1/vector_stores/{store_id}/files/{file_id}")).status_code == 200
    a_files_after = sorted(f["id"] for f in (await a.get(f"/v1/vector_stores/{store_id}/files")).json()["data"])
    assert a_files_after == a_files_before and own_file not in a_files_after


def _fill(body: dict[str, Any], target: str) -> dict[str, Any]:
    if "rag" in body:
        return {**body, "rag": {"vector_store_ids": [target]}}
    return body
