"""``/v1/vector_stores/{id}/file_batches`` over real PostgreSQL and the real retriever, driven by
the official ``openai`` client: each file is added on its own, so a file the retriever cannot read
fails alone with its reason while the others are searchable; cancel stops the files not started;
unknown files are refused before anything is written; another tenant sees nothing; a batch left by a
gateway that stopped is finished by the next one to look at it."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from openai import AsyncOpenAI, NotFoundError
from openai.types.vector_stores import VectorStoreFile, VectorStoreFileBatch

from tests.integration.gateway.conftest import GatewayFactory

GOOD = b"Parking. Visitors park on level -2; the barrier opens with the code 7301."
NOT_A_PDF = b"this is not a PDF at all"


def openai_client(url: str, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


async def test_each_file_has_its_own_outcome(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    _, _, key = await gateway.new_tenant()
    _, _, other_key = await gateway.new_tenant()
    async with openai_client(gateway.url, key) as client, openai_client(gateway.url, other_key) as other:
        good = await client.files.create(file=("parking.txt", GOOD), purpose="assistants")
        bad = await client.files.create(file=("broken.pdf", NOT_A_PDF), purpose="assistants")
        store = await client.vector_stores.create(name="batches")
        batch = await client.vector_stores.file_batches.create_and_poll(
            vector_store_id=store.id,
            file_ids=[good.id, bad.id],
            attributes={"team": "facilities"},
            poll_interval_ms=100,
        )
        assert isinstance(batch, VectorStoreFileBatch) and batch.id.startswith("vsfb_")
        assert batch.status == "completed" and batch.vector_store_id == store.id
        counts = batch.file_counts
        assert (counts.completed, counts.failed, counts.in_progress, counts.cancelled, counts.total) == (1, 1, 0, 0, 2)

        files = await client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
        by_id = {f.id: f for f in files.data}
        assert [f.id for f in files.data] == [good.id, bad.id]  # in the order given
        assert all(isinstance(f, VectorStoreFile) for f in files.data)
        assert by_id[good.id].status == "completed" and by_id[good.id].last_error is None
        assert by_id[good.id].attributes == {"team": "facilities"}
        assert (by_id[good.id].model_extra or {})["chunk_count"] >= 1
        failed = by_id[bad.id]
        assert failed.status == "failed" and failed.last_error is not None
        assert failed.last_error.code == "invalid_file" and failed.last_error.message
        only_failed = await client.vector_stores.file_batches.list_files(
            batch.id, vector_store_id=store.id, filter="failed"
        )
        assert [f.id for f in only_failed.data] == [bad.id]
        page = await client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, limit=1)
        assert [f.id for f in page.data] == [good.id] and page.has_more

        hits = await client.vector_stores.search(store.id, query="barrier code for visitors")
        assert hits.data and hits.data[0].file_id == good.id
        in_store = [f.id for f in (await client.vector_stores.files.list(store.id)).data]
        assert in_store == [good.id]

        again = await client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
        assert again.status == "completed" and again.file_counts == counts
        with pytest.raises(NotFoundError):  # another tenant: no such batch (nor store)
            await other.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)


async def test_unknown_files_are_refused_before_anything_is_written(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    _, _, key = await gateway.new_tenant()
    async with gateway.client(key) as http:
        uploaded = await http.post("/v1/files", files={"file": ("a.txt", GOOD)}, data={"purpose": "assistants"})
        store = (await http.post("/v1/vector_stores", json={"name": "x"})).json()["id"]
        body = {"file_ids": [uploaded.json()["id"], "file-missing"]}
        refused = await http.post(f"/v1/vector_stores/{store}/file_batches", json=body)
        assert refused.status_code == 404 and refused.json()["error"]["param"] == "file_ids[1]"
        empty = await http.post(f"/v1/vector_stores/{store}/file_batches", json={"file_ids": []})
        assert empty.status_code == 400 and empty.json()["error"]["param"] == "file_ids"
        no_store = await http.post("/v1/vector_stores/vs_missing/file_batches", json={"file_ids": ["file-x"]})
        assert no_store.status_code == 404
        missing = await http.get(f"/v1/vector_stores/{store}/file_batches/vsfb_missing")
        assert missing.status_code == 404
        assert (await http.get(f"/v1/vector_stores/{store}/files")).json()["data"] == []


async def test_cancel_stops_the_files_not_started(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    _, _, key = await gateway.new_tenant()
    async with openai_client(gateway.url, key) as client:
        uploads = [
            await client.files.create(file=(f"n{i}.txt", GOOD + f" Note {i}.".encode()), purpose="assistants")
            for i in range(12)
        ]
        store = await client.vector_stores.create(name="cancel")
        batch = await client.vector_stores.file_batches.create(store.id, file_ids=[u.id for u in uploads])
        cancelled = await client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
        for _ in range(200):
            if cancelled.status != "in_progress":
                break
            await asyncio.sleep(0.05)
            cancelled = await client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
        counts = cancelled.file_counts
        assert counts.in_progress == 0 and counts.failed == 0 and counts.completed + counts.cancelled == 12
        assert counts.cancelled >= 1 and cancelled.status == "cancelled"  # 12 files outlast one round trip
        files = (await client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, limit=100)).data
        completed = {f.id for f in files if f.status == "completed"}
        in_store = {f.id for f in (await client.vector_stores.files.list(store.id, limit=100)).data}
        assert in_store == completed  # a cancelled file was never added


async def test_a_batch_left_by_a_stopped_gateway_is_finished(
    start_gateway: GatewayFactory, gateway_database_url: str
) -> None:
    gateway = await start_gateway()
    tenant, _, key = await gateway.new_tenant()
    async with openai_client(gateway.url, key) as client:
        first = await client.files.create(file=("a.txt", GOOD), purpose="assistants")
        second = await client.files.create(file=("b.txt", GOOD + b" Bikes go to level -1."), purpose="assistants")
        store = await client.vector_stores.create(name="left")
        batch_id = f"vsfb_{uuid.uuid4().hex}"
        # as a gateway leaves it that recorded the batch and stopped while adding the first file
        async with await psycopg.AsyncConnection.connect(gateway_database_url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO gateway.vector_store_file_batches (id, tenant_id, vector_store_id) VALUES (%s, %s, %s)",
                (batch_id, tenant, store.id),
            )
            await conn.execute(
                "INSERT INTO gateway.vector_store_file_batch_files (batch_id, file_id, position, filename, claimed_at)"
                " VALUES (%s, %s, 0, 'a.txt', now() - interval '1 hour'), (%s, %s, 1, 'b.txt', NULL)",
                (batch_id, first.id, batch_id, second.id),
            )
        poll = client.vector_stores.file_batches.poll(batch_id, vector_store_id=store.id, poll_interval_ms=100)
        batch = await asyncio.wait_for(poll, 60)
        assert batch.status == "completed" and batch.file_counts.completed == 2
        in_store = {f.id for f in (await client.vector_stores.files.list(store.id)).data}
        assert in_store == {first.id, second.id}
