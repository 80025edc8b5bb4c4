"""LISTEN for registry changes on a dedicated connection, reconnecting when the database drops.

After every (re)connection the caller's ``resync`` runs first, so changes announced while the
listener was away are not missed; then each notification's payload (an adapter name) is handed
to ``changed``. Neither callback's failure stops the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

log = logging.getLogger(__name__)

APPLICATION_NAME = "ragtune-generator-listener"
_KEEPALIVE: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


class RegistryListener:
    def __init__(
        self,
        url: str,
        channel: str,
        resync: Callable[[], Awaitable[None]],
        changed: Callable[[str], Awaitable[None]],
        max_backoff_s: float = 5.0,
    ) -> None:
        self._url = url
        self._channel = channel
        self._resync = resync
        self._changed = changed
        self._max_backoff_s = max_backoff_s
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.connections = 0  # how many times it has (re)connected, for logs and tests

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="generator-registry-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, application_name=APPLICATION_NAME, connect_timeout=5, **_KEEPALIVE
                ) as conn:
                    await conn.execute(f"LISTEN {self._channel}")
                    self.connections += 1
                    log.info("listening for adapter registry changes (connection %d)", self.connections)
                    await self._guarded(self._resync())
                    self.connected.set()
                    backoff = 0.2
                    # closed on any exit: the generator holds the connection's lock while it is open,
                    # and closing the connection (on cancellation, say) waits for that lock
                    async with contextlib.aclosing(conn.notifies()) as notifications:
                        async for notification in notifications:
                            await self._guarded(self._changed(notification.payload))
            except psycopg.Error as exc:
                log.warning("adapter registry listener lost its connection (%s); reconnecting", exc)
            self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

    @staticmethod
    async def _guarded(work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            log.exception("handling an adapter registry change failed")
