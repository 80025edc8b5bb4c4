"""The adapter registry listener on a real PostgreSQL, without an engine: notifications arrive,
a killed connection is re-established (with a resync), and closing it while it handles a
notification returns at once."""

from __future__ import annotations

import asyncio

import psycopg

from ragtune_generator.listener import APPLICATION_NAME, RegistryListener

CHANNEL = "ragtune_test_listener"


async def notify(url: str, payload: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))


async def test_notifications_reconnection_and_close_while_handling(database_url):
    received: list[str] = []
    resyncs = 0
    handling = asyncio.Event()
    release = asyncio.Event()

    async def resync() -> None:
        nonlocal resyncs
        resyncs += 1

    async def changed(name: str) -> None:
        received.append(name)
        if name == "slow":
            handling.set()
            await release.wait()  # a handler that is still busy when the listener is closed

    listener = RegistryListener(database_url, CHANNEL, resync, changed, max_backoff_s=0.5)
    listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        assert resyncs == 1
        await notify(database_url, "first")
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.05)
        assert received == ["first"]

        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (APPLICATION_NAME,),
            )
        for _ in range(200):
            if listener.connections == 2 and listener.connected.is_set():
                break
            await asyncio.sleep(0.05)
        assert listener.connections == 2 and resyncs == 2, "the listener did not reconnect and resync"
        await notify(database_url, "second")
        for _ in range(100):
            if "second" in received:
                break
            await asyncio.sleep(0.05)
        assert received == ["first", "second"]

        await notify(database_url, "slow")
        await asyncio.wait_for(handling.wait(), 10)
    finally:
        await asyncio.wait_for(listener.close(), 10)
