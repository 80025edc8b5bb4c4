"""Vector stores and files as the official `openai` client reads them from the live gateway: each
answer is a valid instance of the client's type under strict validation (not only the client's
lenient parse), and ragtune's extra fields ride along as its extras."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openai.types import FileDeleted, FileObject, VectorStore, VectorStoreDeleted, VectorStoreSearchResponse
from openai.types.vector_stores import VectorStoreFile, VectorStoreFileDeleted

from tests.e2e.conftest import HANDBOOK, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_answers_validate_as_the_openai_types(tenant_a: Tenant, handbook_store: tuple[str, str]) -> None:
    store_id, file_id = handbook_store
    http = tenant_a.http
    store = VectorStore.model_validate((await http.get(f"/v1/vector_stores/{store_id}")).json())
    assert store.id == store_id and store.status == "completed" and (store.model_extra or {})["chunk_count"] >= 1
    stores = await every_item(http, "/v1/vector_stores")  # earlier tests may have made more than a page
    assert store_id in [VectorStore.model_validate(s).id for s in stores]

    listed = (await http.get(f"/v1/vector_stores/{store_id}/files")).json()
    (store_file,) = [VectorStoreFile.model_validate(f) for f in listed["data"]]
    assert store_file.id == file_id and store_file.vector_store_id == store_id
    assert (store_file.model_extra or {})["filename"] == "handbook.txt"
    one = VectorStoreFile.model_validate((await http.get(f"/v1/vector_stores/{store_id}/files/{file_id}")).json())
    assert one == store_file

    search = (await http.post(f"/v1/vector_stores/{store_id}/search", json={"query": "paid leave"})).json()
    assert search["object"] == "vector_store.search_results.page" and search["search_query"] == ["paid leave"]
    assert search["has_more"] is False and search["next_page"] is None
    results = [VectorStoreSearchResponse.model_validate(r) for r in search["data"]]
    extra = results[0].model_extra or {}
    assert HANDBOOK[extra["start_offset"] : extra["end_offset"]] == results[0].content[0].text

    file = FileObject.model_validate((await http.get(f"/v1/files/{file_id}")).json())
    assert file.filename == "handbook.txt" and file.bytes == len(HANDBOOK.encode())
    files = {f["id"]: f for f in await every_item(http, "/v1/files")}
    # (other tests' files include purpose "evals", which ragtune adds and this client's Literal lacks)
    assert FileObject.model_validate(files[file_id]) == file


async def every_item(http: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    """Every item of a cursor-paged list, following ``after=<last_id>`` while ``has_more``."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = (await http.get(path, params=params)).json()
        assert page["object"] == "list", page
        items += page["data"]
        if not page["has_more"]:
            return items
        params["after"] = page["data"][-1]["id"]


async def test_the_client_parses_creates_and_deletes(tenant_a: Tenant) -> None:
    client = tenant_a.client
    uploaded = await client.files.create(
        file=("notes.md", b"# Notes\n\nThe kitchen closes at 15:00."), purpose="assistants"
    )
    assert isinstance(uploaded, FileObject) and uploaded.purpose == "assistants" and uploaded.status == "processed"
    store = await client.vector_stores.create(
        name="shapes",
        chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 64, "chunk_overlap_tokens": 8}},
    )
    try:
        assert (store.model_extra or {})["chunking_strategy"]["static"]["max_chunk_size_tokens"] == 64
        added = await client.vector_stores.files.create(store.id, file_id=uploaded.id, attributes={"kind": "notes"})
        assert isinstance(added, VectorStoreFile) and added.status == "completed"
        assert added.attributes == {"kind": "notes"} and (added.model_extra or {})["chunk_count"] >= 1
        page = await client.vector_stores.search(store.id, query="kitchen", max_num_results=2)
        assert page.data and isinstance(page.data[0], VectorStoreSearchResponse)
        assert (page.data[0].model_extra or {})["vector_store_id"] == store.id
        removed = await client.vector_stores.files.delete(uploaded.id, vector_store_id=store.id)
        assert isinstance(removed, VectorStoreFileDeleted) and removed.deleted and removed.id == uploaded.id
    finally:
        deleted = await client.vector_stores.delete(store.id)
        assert isinstance(deleted, VectorStoreDeleted) and deleted.deleted
        gone = await client.files.delete(uploaded.id)
        assert isinstance(gone, FileDeleted) and gone.deleted and gone.id == uploaded.id
