"""The gateway under hostile input and a failing database, through its ASGI app with a real
PostgreSQL and no downstream services (nothing here reaches them): bodies bounded before they are
read, unauthenticated requests refused before their body, every request field range- and
text-checked (400 naming it), PostgreSQL down -> 503 with Retry-After, an aborted upload -> 4xx."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.types import Message

from ragtune_gateway.app import create_app
from ragtune_gateway.body_limits import DRAIN_MAX_BYTES
from ragtune_gateway.settings import GatewaySettings

ADMIN_KEY = "hardening-admin-key-0123456789abcdef0123456789"
MAX_UPLOAD = 64 * 1024
MAX_JSON = 16 * 1024
UNUSED = "127.0.0.1:9"  # the discard port: no service answers here, and no test asks one


@dataclass
class Gateway:
    app: FastAPI
    http: httpx.AsyncClient  # authenticated as a tenant
    key: str
    database_url: str


@asynccontextmanager
async def serve_gateway(database_url: str, state_dir: Path, **overrides: Any) -> AsyncIterator[Gateway]:
    """A gateway app on its own new database, started (lifespan) with a tenant and its key."""
    name = f"gw_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(database_url, dbname=name)
    settings = GatewaySettings(
        database_url=url,
        state_dir=state_dir / name,
        admin_key=SecretStr(ADMIN_KEY),
        retriever_address=UNUSED,
        generator_address=UNUSED,
        trainer_address=UNUSED,
        max_upload_bytes=MAX_UPLOAD,
        max_json_body_bytes=MAX_JSON,
        **overrides,
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as admin:
                admin.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
                tenant = (await admin.post("/v1/admin/tenants", json={"name": "hardening"})).json()["id"]
                key = (await admin.post(f"/v1/admin/tenants/{tenant}/keys")).json()["key"]
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers=headers) as http:
                yield Gateway(app, http, key, url)
    finally:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(database_url: str, state_dir: Path) -> AsyncIterator[Gateway]:
    async with serve_gateway(database_url, state_dir) as gw:
        yield gw


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


# ---------------------------------------------------------------- bodies bounded before they are read


async def call_asgi(
    app: FastAPI, method: str, path: str, headers: dict[str, str], chunks: list[bytes] | None
) -> tuple[int, dict[str, str], bytes, int]:
    """One raw ASGI request: (status, headers, body, body chunks the app asked for). ``chunks``
    None: the body must never be read (reading it fails the test)."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("gw", 80),
        "state": {},
    }
    reads = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal reads
        assert chunks is not None, "the body was read"
        reads += 1
        if reads <= len(chunks):
            return {"type": "http.request", "body": chunks[reads - 1], "more_body": reads < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    head = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], head, body, reads


async def test_unauthenticated_huge_post_is_refused_before_its_body(gateway: Gateway) -> None:
    huge = {"content-length": "1000000000", "content-type": "application/json"}
    for path in ("/v1/files", "/v1/chat/completions", "/v1/admin/tenants"):
        status, _, body, _ = await call_asgi(gateway.app, "POST", path, huge, None)
        assert status == 401 and json.loads(body)["error"]["code"] == "missing_api_key"
    # a key that is not one: over the limit -> 413 at once; under it -> 401 from the key, still unread
    wrong = {**huge, "authorization": "Bearer rt-not-a-key"}
    status, _, body, _ = await call_asgi(gateway.app, "POST", "/v1/chat/completions", wrong, None)
    assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large"
    small = {**wrong, "content-length": "100"}
    status, _, body, _ = await call_asgi(gateway.app, "POST", "/v1/chat/completions", small, None)
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    admin_route = {**small, "authorization": f"Bearer {gateway.key}"}  # a tenant key is no admin key
    status, _, _, _ = await call_asgi(gateway.app, "POST", "/v1/admin/tenants", admin_route, None)
    assert status == 401


async def test_body_limits_by_route_class(gateway: Gateway) -> None:
    auth = {"authorization": f"Bearer {gateway.key}"}
    # declared over the limit but small enough to drain: read and dropped, then 413 on a connection kept
    # open (closing a socket with unread bytes resets it, and a client still sending loses the answer)
    declared = {**auth, "content-type": "application/json", "content-length": str(MAX_JSON + 1)}
    parts = [b"x" * MAX_JSON, b"x"]
    status, headers, _, reads = await call_asgi(gateway.app, "POST", "/v1/vector_stores", declared, parts)
    assert status == 413 and reads == 2 and "connection" not in headers
    # past what is worth draining: refused at once, never read, and the connection closed
    huge = {**declared, "content-length": str(DRAIN_MAX_BYTES + 1)}
    status, headers, _, _ = await call_asgi(gateway.app, "POST", "/v1/vector_stores", huge, None)
    assert status == 413 and headers.get("connection") == "close"
    # an upload may be bigger than a JSON body: refused only over max_upload_bytes (+ multipart overhead)
    upload = {**auth, "content-type": "multipart/form-data; boundary=x", "content-length": str(DRAIN_MAX_BYTES * 2)}
    status, _, body, _ = await call_asgi(gateway.app, "POST", "/v1/files", upload, None)
    assert status == 413 and json.loads(body)["error"]["code"] == "file_too_large"


async def test_streamed_body_is_cut_at_the_limit(gateway: Gateway) -> None:
    """No Content-Length (chunked): counted as it arrives; reading stops past the limit."""
    headers = {"authorization": f"Bearer {gateway.key}", "content-type": "application/json"}
    headers["transfer-encoding"] = "chunked"
    chunks = [b'{"name": "' + b"a" * 4096] * 64  # 256 KiB, never whole JSON
    status, _, body, reads = await call_asgi(gateway.app, "POST", "/v1/vector_stores", headers, chunks)
    assert status == 413, body
    assert reads <= MAX_JSON // 4096 + 2  # stopped at the limit, not after the whole body


async def test_aborted_upload_is_a_client_error(gateway: Gateway) -> None:
    """The client goes away mid-upload: a 4xx in the error shape, not a plain-text 500."""
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    headers = {
        "authorization": f"Bearer {gateway.key}",
        "content-type": f"multipart/form-data; boundary={boundary}",
        "content-length": str(len(head) + 20_000),
    }
    status, _, body, _ = await call_asgi(gateway.app, "POST", "/v1/files", headers, [head, b"x" * 5000])
    assert 400 <= status < 500, body
    assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}


# ---------------------------------------------------------------- typed, bounded request fields


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/fine_tuning/jobs", {"training_file": "file-1", "seed": 118460379562}, "seed"),
        ("/v1/fine_tuning/jobs", {"training_file": "file-1", "seed": -1}, "seed"),
        ("/v1/fine_tuning/jobs", {"training_file": "file\x00"}, "training_file"),
        ("/v1/fine_tuning/jobs", {"training_file": "f", "validation_file": "\ud800"}, "validation_file"),
        ("/v1/fine_tuning/jobs", {"training_file": "f", "max_seq_length": 2**31}, "max_seq_length"),
        ("/v1/fine_tuning/jobs", {"training_file": "f", "lora": {"r": 2**40}}, "lora.r"),
        (
            "/v1/fine_tuning/jobs",
            {"training_file": "f", "hyperparameters": {"n_epochs": 10**30}},
            "hyperparameters.n_epochs",
        ),
        ("/v1/vector_stores", {"metadata": {"k\x00": "v"}}, "metadata"),
        ("/v1/vector_stores", {"file_ids": ["file\x00"]}, "file_ids[0]"),
        ("/v1/vector_stores", {"name": "a\x00b"}, "name"),
        (
            "/v1/vector_stores",
            {"chunking_strategy": {"type": "static", "static": {"chunk_overlap_tokens": 2**40}}},
            "chunking_strategy.static.chunk_overlap_tokens",
        ),
        ("/v1/vector_stores/vs_1/files", {"file_id": "file-\x00"}, "file_id"),
        ("/v1/vector_stores/vs_1/search", {"query": "q\x00"}, "query"),
        ("/v1/vector_stores/vs_1/search", {"query": "q", "filters": {"k\x00": 1}}, "filters"),
        ("/v1/vector_stores/vs_1/search", {"query": "q", "filters": {"a": 10**30}}, "filters"),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "\x00"}]},
            "messages[0].content",
        ),
        ("/v1/chat/completions", {"model": "m\x00", "messages": [{"role": "user", "content": "x"}]}, "model"),
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 2**64}, "seed"),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2**31},
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "x" * 9000}] * 30},
            "messages",
        ),
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}] * 257}, "messages"),
        ("/v1/evaluations", {"file_id": "f\x00"}, "file_id"),
        ("/v1/aliases/ft:x/promotions", {"candidate": "c\x00", "candidate_score": 1}, "candidate"),
        (
            "/v1/aliases/ft:x/promotions",
            {"candidate": "c", "candidate_score": 1, "evaluation": {"\x00": 1}},
            "evaluation",
        ),
    ],
)
async def test_bad_fields_are_400_naming_the_field(
    gateway: Gateway, path: str, body: dict[str, Any], param: str
) -> None:
    content = json.dumps(body).encode()
    response = await gateway.http.post(path, content=content, headers={"content-type": "application/json"})
    if len(content) > MAX_JSON:
        error_of(response, 413)
        return
    error = error_of(response, 400)
    assert error["param"] == param, error


async def test_json_nesting_and_breadth_are_bounded(gateway: Gateway) -> None:
    deep: dict[str, Any] = {"a": 1}
    for _ in range(20):
        deep = {"$and": [deep]}
    chat = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
    for filters in (deep, {"$or": [{"k": i} for i in range(600)]}):
        rag = {"vector_store_ids": ["vs_1"], "filter": filters}
        assert error_of(await gateway.http.post("/v1/chat/completions", json={**chat, "rag": rag}), 400)["param"] == (
            "rag.filter"
        )
        search = await gateway.http.post("/v1/vector_stores/vs_1/search", json={"query": "q", "filters": filters})
        assert error_of(search, 400)["param"] == "filters"
    # a body nested past what a JSON parser recurses into: 400, never 5xx
    bomb = b'{"model": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = await gateway.http.post(
        "/v1/chat/completions", content=bomb, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text


async def test_nul_in_url_path_and_query_is_400(gateway: Gateway) -> None:
    for path in (
        "/v1/files/file-%00",
        "/v1/files/file-%00/content",
        "/v1/evaluations/eval_%00",
        "/v1/evaluations/eval_%00/report.html",
        "/v1/fine_tuning/jobs/ftjob-%00",
        "/v1/aliases/ft:x%00",
        "/v1/aliases/ft:x%00/promotions",
        "/v1/models/m%00",
    ):
        error_of(await gateway.http.get(path), 400)
    for path in ("/v1/files?after=%00", "/v1/evaluations?after=x%00"):
        assert error_of(await gateway.http.get(path), 400)["param"] == "after"


# ---------------------------------------------------------------- faults


async def test_database_down_is_503_with_retry_after(database_url: str, state_dir: Path) -> None:
    async with serve_gateway(database_url, state_dir, db_connect_timeout_s=1, auth_cache_s=0) as gw:
        assert (await gw.http.get("/v1/files")).status_code == 200
        dbname = psycopg.conninfo.conninfo_to_dict(gw.database_url)["dbname"]
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')  # every connection cut, none possible
        for _ in range(2):  # the broken pooled connection, then no connection at all
            response = await gw.http.get("/v1/files")
            error = error_of(response, 503)
            assert error["code"] == "database_unavailable" and response.headers["retry-after"].isdigit()
        # a body-carrying request is checked (key) before its body: also 503, not 500
        response = await gw.http.post("/v1/vector_stores", json={"name": "x"})
        assert error_of(response, 503)["code"] == "database_unavailable"


async def test_files_of_one_request_are_bounded_in_total(database_url: str, state_dir: Path) -> None:
    """One request's files travel to the retriever in one message: their total is checked (413
    naming the file that tips it) before any is read or sent; a file named twice counts once."""
    async with serve_gateway(database_url, state_dir, max_request_file_bytes=2048) as gw:
        ids = []
        for name in ("a.txt", "b.txt"):
            uploaded = await gw.http.post(
                "/v1/files", files={"file": (name, b"x" * 1500)}, data={"purpose": "assistants"}
            )
            assert uploaded.status_code == 200, uploaded.text
            ids.append(uploaded.json()["id"])
        error = error_of(await gw.http.post("/v1/vector_stores", json={"file_ids": ids}), 413)
        assert error["param"] == "file_ids[1]" and error["code"] == "request_too_large"
        # the same file twice is one file: past the bound, on to the (absent) retriever
        twice = await gw.http.post("/v1/vector_stores", json={"file_ids": [ids[0], ids[0]]})
        assert twice.status_code == 503, twice.text


async def test_upload_names_are_checked(gateway: Gateway) -> None:
    for name in (b"a\x00.txt", b"n" * 300 + b".txt"):
        body = (
            b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + name + b'"\r\n'
            b"Content-Type: text/plain\r\n\r\ntext\r\n--b--\r\n"
        )
        headers = {"content-type": "multipart/form-data; boundary=b"}
        response = await gateway.http.post("/v1/files", content=body, headers=headers)
        assert error_of(response, 400)["param"] == "file"
