"""What the tests of creations under a per-tenant cap share when the creation is made by another
service (a fine-tuning job on the trainer, a vector store on the retriever): a gRPC stand-in of
that service served in process, a gate that holds its create calls, and the checks that nothing
stays pinned in the gateway's database while they are held."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import grpc
import httpx
import psycopg

from ragtune_common.server import build_server
from ragtune_common.settings import ServiceSettings
from tests.fixtures.security import SERVICE_TOKEN_SECRET

Creation = Callable[[], Coroutine[Any, Any, httpx.Response]]


class Gate:
    """Holds the calls that pass it while closed (it starts open), counting those it holds."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self.held = 0

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def passage(self) -> None:
        self.held += 1
        try:
            await self._open.wait()
        finally:
            self.held -= 1


@contextlib.asynccontextmanager
async def serve_stand_in(register: Callable[[grpc.aio.Server], None], service: str) -> AsyncIterator[str]:
    """A gRPC server answering ``service`` with the servicer ``register`` adds; yields its address."""
    settings = ServiceSettings(port=0, service_token=SERVICE_TOKEN_SECRET, drain_notice_s=0)
    bound = await build_server(settings, register, [service])
    await bound.server.start()
    await bound.set_serving()
    try:
        yield f"127.0.0.1:{bound.port}"
    finally:
        await bound.stop(0)


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


async def _one_row(database_url: str, query: str, params: Sequence[Any] | None = None) -> tuple[Any, ...]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
    assert row is not None
    return row


async def held_in_the_database(database_url: str) -> tuple[int, int]:
    """(sessions idle in a transaction, advisory locks held) in the gateway's database."""
    row = await _one_row(
        database_url,
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        "        AND state LIKE 'idle in transaction%'),"
        "       (SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        "        WHERE l.locktype = 'advisory' AND d.datname = current_database())",
    )
    return int(row[0]), int(row[1])


async def assert_nothing_pinned_while_held(
    http: httpx.AsyncClient, gate: Gate, create: Creation, count: int, database_url: str, kind: str
) -> None:
    """Hold ``count`` creations at ``gate`` together: meanwhile no session idles in a transaction,
    no advisory lock is held, and the gateway answers other requests at once. Then every creation
    succeeds and gives its place under the cap back."""
    gate.close()
    creations = [asyncio.create_task(create()) for _ in range(count)]
    try:
        await until(lambda: gate.held == count, "every creation reached the service")
        assert await held_in_the_database(database_url) == (0, 0)
        for _ in range(3):  # the pool serves other requests meanwhile, at once
            listed = await asyncio.wait_for(http.get("/v1/files"), 1.5)
            assert listed.status_code == 200, listed.text
    finally:
        gate.open()
    answers = await asyncio.gather(*creations)
    assert [a.status_code for a in answers] == [200] * count, [a.text for a in answers]
    query = "SELECT count(*) FROM gateway.cap_reservations WHERE kind = %s"
    assert await _one_row(database_url, query, (kind,)) == (0,), "every place was given back"


async def race(gate: Gate, creations: Sequence[Creation]) -> list[httpx.Response]:
    """Every creation in flight before the service answers the first; their answers."""
    gate.close()
    tasks = [asyncio.create_task(create()) for create in creations]
    await asyncio.sleep(1.0)
    gate.open()
    return list(await asyncio.gather(*tasks))
