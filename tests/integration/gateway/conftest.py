"""The gateway served by uvicorn on a real port over real PostgreSQL and the session's real
retriever, without a generator or a trainer (their addresses answer nothing): for the gateway's own
rules (keys, limits, caps, what it serves), which need no model. Each test starts the gateways it
needs with its own settings, on a database of this package's, so several can share it as replicas."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest_asyncio
from pydantic import SecretStr

from ragtune_common.server import GrpcServer
from ragtune_gateway.settings import GatewaySettings
from tests.fixtures.gateway import Gateway, serve_gateway
from tests.fixtures.security import SERVICE_TOKEN_SECRET

ADMIN_KEY = "integration-admin-key-0123456789abcdef"


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
        return await stack.enter_async_context(serve_gateway(GatewaySettings(**{**values, **overrides})))

    async with stack:
        yield start
