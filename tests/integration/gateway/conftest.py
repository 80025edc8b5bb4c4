"""The gateway served by uvicorn on a real port over real PostgreSQL and the session's real
retriever, without a generator or a trainer (their addresses answer nothing): for the gateway's own
rules (keys, limits, caps, what it serves), which need no model. Each test starts the gateways it
needs with its own settings, on a database of this package's, so several can share it as replicas."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from ragtune_common.server import GrpcServer
from ragtune_gateway.app import create_app
from ragtune_gateway.settings import GatewaySettings
from tests.fixtures.security import SERVICE_TOKEN_SECRET

ADMIN_KEY = "integration-admin-key-0123456789abcdef"


@dataclass
class Gateway:
    app: FastAPI
    url: str
    admin: httpx.AsyncClient

    def client(self, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    async def new_tenant(self) -> tuple[str, str, str]:
        """(tenant id, key id, key) of a fresh tenant."""
        created = await self.admin.post("/v1/admin/tenants", json={"name": "it"})
        assert created.status_code == 200, created.text
        tenant = created.json()["id"]
        key = await self.admin.post(f"/v1/admin/tenants/{tenant}/keys")
        assert key.status_code == 200, key.text
        return tenant, key.json()["id"], key.json()["key"]


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def gateway_database_url(database_url: str) -> AsyncIterator[str]:
    name = f"gw_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    yield psycopg.conninfo.make_conninfo(database_url, dbname=name)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(settings: GatewaySettings) -> AsyncIterator[Gateway]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the gateway stopped while starting")
        await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as admin:
            yield Gateway(app, url, admin)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        sock.close()


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest_asyncio.fixture(loop_scope="session")
async def start_gateway(
    gateway_database_url: str, tmp_path: Path, retriever_server: GrpcServer
) -> AsyncIterator[GatewayFactory]:
    """``await start_gateway(**settings)``: a gateway (another replica at each call, sharing the
    database and the state directory), stopped after the test."""
    stack = contextlib.AsyncExitStack()
    nowhere = _unused_port()

    async def start(**overrides: Any) -> Gateway:
        values: dict[str, Any] = dict(
            database_url=gateway_database_url,
            state_dir=tmp_path,
            port=0,
            admin_key=SecretStr(ADMIN_KEY),
            retriever_address=f"127.0.0.1:{retriever_server.port}",
            generator_address=f"127.0.0.1:{nowhere}",
            trainer_address=f"127.0.0.1:{nowhere}",
            service_token=SERVICE_TOKEN_SECRET,
            rpc_timeout_s=10,
        )
        return await stack.enter_async_context(serve(GatewaySettings(**{**values, **overrides})))

    async with stack:
        yield start
