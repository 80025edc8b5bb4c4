"""Upgrading from a gateway that kept documents' bytes on its disk: at start-up the bytes found there
go into the database (the file is then served by every replica) and the folder is emptied; a file
whose bytes were on another pod's disk answers 409 with what to do, not a 500."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg

from tests.integration.gateway.conftest import GatewayFactory


async def test_bytes_left_on_disk_are_imported_at_start(
    start_gateway: GatewayFactory, gateway_database_url: str, tmp_path: Path
) -> None:
    first = await start_gateway()
    tenant, _, key = await first.new_tenant()
    kept, lost = f"file-{uuid.uuid4().hex[:24]}", f"file-{uuid.uuid4().hex[:24]}"
    async with await psycopg.AsyncConnection.connect(gateway_database_url, autocommit=True) as db:
        for file_id in (kept, lost):  # rows as the old gateway wrote them: bytes beside, on its disk
            await db.execute(
                "INSERT INTO gateway.files (id, tenant_id, filename, purpose, bytes, mime_type)"
                " VALUES (%s, %s, 'old.txt', 'assistants', 11, 'text/plain')",
                (file_id, tenant),
            )
    legacy = tmp_path / "gateway" / "files"
    legacy.mkdir(parents=True)
    (legacy / kept).write_bytes(b"old content")
    (legacy / ".file-partial.part").write_bytes(b"half")  # an upload that never finished
    (legacy / "file-without-a-row").write_bytes(b"orphan")

    upgraded = await start_gateway()  # the same state directory: it finds the old folder
    assert list(legacy.iterdir()) == []
    async with upgraded.client(key) as client, first.client(key) as other:
        for replica in (client, other):
            content = await replica.get(f"/v1/files/{kept}/content")
            assert content.status_code == 200 and content.content == b"old content"
        gone = await client.get(f"/v1/files/{lost}/content")
        assert gone.status_code == 409 and gone.json()["error"]["code"] == "file_content_missing"
