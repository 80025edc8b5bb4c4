"""Bodies over a real socket: refused before they are read, and an upload the trainer never gets
whole is a 4xx in the error shape (it was a plain-text 500: grpc cancelled the stream)."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import MAX_UPLOAD_BYTES, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def raw_request(gateway_url: str, head: str) -> tuple[int, dict[str, object], float]:
    """Sends only the request line and headers (no body) and reads the answer: (status, JSON, seconds)."""
    url = urlsplit(gateway_url)
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(head.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    finally:
        writer.close()
    return int(status_line.split()[1]), json.loads(body), time.perf_counter() - started


async def test_unauthenticated_gigabyte_post_is_refused_at_once(gateway_url: str, tenant_a: Tenant) -> None:
    head = "POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    status, body, seconds = await raw_request(gateway_url, head + "Content-Length: 1000000000\r\n\r\n")
    assert status == 401 and body["error"]["code"] == "missing_api_key" and seconds < 3  # type: ignore[index]
    keyed = head + f"Authorization: Bearer {tenant_a.key}\r\nContent-Length: 1000000000\r\n\r\n"
    status, body, seconds = await raw_request(gateway_url, keyed)
    assert status == 413 and body["error"]["code"] == "file_too_large" and seconds < 3  # type: ignore[index]


async def test_fine_tune_upload_over_the_limit_is_413(tenant_a: Tenant) -> None:
    """Within the multipart allowance, so it is read; the stream to the trainer stops at the limit."""
    line = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    data = ((line + "\n") * (MAX_UPLOAD_BYTES // len(line) + 20)).encode()
    assert MAX_UPLOAD_BYTES < len(data) < MAX_UPLOAD_BYTES + 32 * 1024
    response = await tenant_a.http.post("/v1/files", files={"file": ("big.jsonl", data)}, data={"purpose": "fine-tune"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "file_too_large"
