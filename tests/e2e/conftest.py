"""The whole stack for end-to-end tests through REST: the session's retriever and generator (real
PostgreSQL, real vLLM), a trainer publishing to that generator, and the gateway served by uvicorn
on a real port in the session's event loop. The trainer and the gateway get a database of their
own on the session's server, so this trainer's job queue is apart from the trainer tests' one."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import pytest_asyncio
from openai import AsyncOpenAI
from pydantic import SecretStr

from ragtune_common.server import GrpcServer
from ragtune_gateway.settings import GatewaySettings
from tests.fixtures.gateway import serve_gateway
from tests.fixtures.security import SERVICE_TOKEN_SECRET
from tests.fixtures.trainer import serve_trainer, small_trainer_settings

ADMIN_KEY = "e2e-admin-key-0123456789abcdef0123456789abcdef"  # >= 32 characters
MAX_UPLOAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class Tenant:
    id: str
    key: str
    client: AsyncOpenAI
    http: httpx.AsyncClient


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def e2e_database_url(database_url: str) -> AsyncIterator[str]:
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    yield psycopg.conninfo.make_conninfo(database_url, dbname=name)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def e2e_trainer(
    e2e_database_url: str, state_dir: Path, retriever_server: GrpcServer, generator_server: GrpcServer
) -> AsyncIterator[GrpcServer]:
    settings = small_trainer_settings(
        e2e_database_url, state_dir, generator_server, retriever_server, artifacts_dir=state_dir / "e2e-trainer"
    )
    async with serve_trainer(settings) as bound:
        yield bound


@pytest.fixture(scope="package")
def gateway_settings(
    e2e_database_url: str,
    state_dir: Path,
    retriever_server: GrpcServer,
    generator_server: GrpcServer,
    e2e_trainer: GrpcServer,
) -> GatewaySettings:
    return GatewaySettings(
        database_url=e2e_database_url,
        state_dir=state_dir / "e2e-gateway",
        port=0,
        admin_key=SecretStr(ADMIN_KEY),
        retriever_address=f"127.0.0.1:{retriever_server.port}",
        generator_address=f"127.0.0.1:{generator_server.port}",
        trainer_address=f"127.0.0.1:{e2e_trainer.port}",
        max_upload_bytes=MAX_UPLOAD_BYTES,
        generate_timeout_s=120,
        service_token=SERVICE_TOKEN_SECRET,
    )


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def gateway_url(gateway_settings: GatewaySettings) -> AsyncIterator[str]:
    """The gateway on a real port, served in this event loop beside the in-process gRPC servers."""
    async with serve_gateway(gateway_settings) as gateway:
        yield gateway.url


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def admin(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=120) as client:
        yield client


async def make_tenant(admin: httpx.AsyncClient, gateway_url: str) -> Tenant:
    created = await admin.post("/v1/admin/tenants", json={"name": "e2e"})
    assert created.status_code == 200, created.text
    tenant_id = created.json()["id"]
    key = await admin.post(f"/v1/admin/tenants/{tenant_id}/keys")
    assert key.status_code == 200, key.text
    secret = key.json()["key"]
    client = AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=secret, max_retries=0, timeout=300)
    http = httpx.AsyncClient(base_url=gateway_url, headers={"Authorization": f"Bearer {secret}"}, timeout=300)
    return Tenant(tenant_id, secret, client, http)


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def tenant_a(admin: httpx.AsyncClient, gateway_url: str) -> AsyncIterator[Tenant]:
    tenant = await make_tenant(admin, gateway_url)
    yield tenant
    await tenant.http.aclose()
    await tenant.client.close()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def tenant_b(admin: httpx.AsyncClient, gateway_url: str) -> AsyncIterator[Tenant]:
    tenant = await make_tenant(admin, gateway_url)
    yield tenant
    await tenant.http.aclose()
    await tenant.client.close()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def base_model(tenant_a: Tenant) -> str:
    models = await tenant_a.client.models.list()
    extra = [(m.id, m.model_extra or {}) for m in models.data]
    return next(name for name, more in extra if not more.get("parent") and not more.get("alias_for"))


HANDBOOK = (
    "Travel policy. Employees book economy class for flights shorter than six hours.\n\n"
    "Leave policy. Every employee gets 27 days of paid leave per calendar year, and unused days expire in March.\n\n"
    "Equipment. New staff receive a laptop on their first day; the IT desk is in room 4.12.\n"
)


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def handbook_store(tenant_a: Tenant) -> AsyncIterator[tuple[str, str]]:
    """A vector store of tenant A holding one plain-text file: (store id, file id)."""
    client = tenant_a.client
    uploaded = await client.files.create(file=("handbook.txt", HANDBOOK.encode()), purpose="assistants")
    store = await client.vector_stores.create(name="handbook", file_ids=[uploaded.id])
    yield store.id, uploaded.id
    with contextlib.suppress(Exception):
        await client.vector_stores.delete(store.id)
