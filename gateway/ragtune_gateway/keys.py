"""Verified API keys remembered per process, and revocation that reaches every gateway process at once.

A key verified against ``gateway.api_keys`` is remembered (by its sha256) for ``auth_cache_s``,
but only while this process listens on the PostgreSQL channel ``tenants.KEY_REVOKED_CHANNEL``:
revoking a key notifies it (``tenants.revoke_key``, in the same statement), and every listening
process drops the key from its cache as the notification arrives. While the listening connection
is down nothing is cached (each request asks the database), and the cache is emptied, since
notifications may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import psycopg
from psycopg_pool import AsyncConnectionPool

from ragtune_gateway import ids
from ragtune_gateway.repositories import tenants

log = logging.getLogger(__name__)

MAX_CACHED = 10_000
RECONNECT_S = (0.5, 1, 2, 5)


@dataclass(frozen=True)
class Caller:
    tenant: str
    key_hash: str


class KeyCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.entries: dict[str, tuple[str, float]] = {}  # key hash -> (tenant, expiry)
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def caller(self, pool: AsyncConnectionPool, key: str) -> Caller | None:
        """The tenant of a valid key: unrevoked and unexpired."""
        key_hash = ids.hash_key(key)
        now = time.monotonic()
        cached = self.entries.get(key_hash)
        if cached is not None and cached[1] > now and self.listening.is_set():
            return Caller(cached[0], key_hash)
        found = await tenants.tenant_for_key_hash(pool, key_hash)
        if found is None:
            self.entries.pop(key_hash, None)
            return None
        tenant, valid_s = found
        if self.ttl_s > 0 and self.listening.is_set():
            if len(self.entries) >= MAX_CACHED:
                self.entries.clear()
            lifetime = self.ttl_s if valid_s is None else min(self.ttl_s, valid_s)  # never past the key's expiry
            self.entries[key_hash] = (tenant, now + lifetime)
        return Caller(tenant, key_hash)

    def forget(self, key_hash: str) -> None:
        self.entries.pop(key_hash, None)

    def start(self, url: str) -> None:
        """Listen for revocations in the background (from the serving event loop)."""
        if self.ttl_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._listen(url), name="api-key-revocations")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self, url: str) -> None:
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {tenants.KEY_REVOKED_CHANNEL}")
                    self.listening.set()
                    failures = 0
                    async for notify in conn.notifies():
                        self.forget(notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.listening.is_set():
                    log.warning("lost the API key revocation channel (%s); not caching keys until it is back", exc)
            finally:
                self.listening.clear()
                self.entries.clear()  # whatever was revoked meanwhile must be asked again
            await asyncio.sleep(RECONNECT_S[min(failures, len(RECONNECT_S) - 1)])
            failures += 1
