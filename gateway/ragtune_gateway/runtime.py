"""What the gateway needs at run time, opened in the app's lifespan: the database pool (schema
``gateway``), the gRPC clients, the admin key and the metrics."""

from __future__ import annotations

import hmac
import json
import logging
import os
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from ragtune_common.database import apply_migrations, open_pool, resolve_database_url, wait_for_database
from ragtune_gateway import ids, repositories
from ragtune_gateway.downstream import Downstream
from ragtune_gateway.keys import Caller, KeyCache
from ragtune_gateway.limits import KeyRateLimiter, StreamSlots
from ragtune_gateway.metrics import Metrics
from ragtune_gateway.repositories import tenants
from ragtune_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"


class GatewayRuntime:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.admin_key: str | None = settings.admin_key.get_secret_value() if settings.admin_key else None
        self._pool: AsyncConnectionPool | None = None
        self._downstream: Downstream | None = None
        self.keys = KeyCache(settings.auth_cache_s)
        self.rate_limiter = KeyRateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)  # per process
        self.streams = StreamSlots(settings.max_streams_per_key)  # per process
        self.base_model: str | None = None  # learnt from the generator's ListModels
        self.owned_models: set[tuple[str, str]] = set()  # (tenant, adapter) pairs seen in ListModels

    @property
    def pool(self) -> AsyncConnectionPool:
        assert self._pool is not None, "the gateway runtime is not started"
        return self._pool

    @property
    def downstream(self) -> Downstream:
        assert self._downstream is not None, "the gateway runtime is not started"
        return self._downstream

    async def start(self) -> None:
        url = resolve_database_url(self.settings, self.settings.state_dir)
        await wait_for_database(url, timeout_s=60)
        await apply_migrations(url, repositories.SCHEMA, "ragtune_gateway.migrations")
        self._pool = await open_pool(url, self.settings)
        self.keys.start(url)
        self._downstream = Downstream.open(self.settings)
        await self._downstream.start()
        if self.admin_key is None:
            self.admin_key = await self._bootstrap_credentials(self.settings.credentials_path)

    async def close(self) -> None:
        await self.keys.close()
        if self._downstream is not None:
            await self._downstream.close()
        if self._pool is not None:
            await self._pool.close()

    async def caller(self, key: str) -> Caller | None:
        """The tenant of an unrevoked API key (see :class:`KeyCache`)."""
        return await self.keys.caller(self.pool, key)

    def is_admin_key(self, key: str) -> bool:
        """Whether ``key`` is the admin key (compared in constant time)."""
        return self.admin_key is not None and hmac.compare_digest(key.encode(), self.admin_key.encode())

    async def tenant_for_key(self, key: str) -> str | None:
        caller = await self.caller(key)
        return caller.tenant if caller else None

    def forget_key(self, key: str) -> None:
        """Drop a revoked key from this process's cache (the others learn it by notification)."""
        self.keys.forget(ids.hash_key(key))

    async def _bootstrap_credentials(self, path: Path) -> str:
        """No admin key configured (``make run``): reuse the one in ``path``, or make one with a
        "default" tenant and a key for it, written there (mode 0600) for the CLI to read."""
        if path.is_file():  # noqa: ASYNC240  (once, at start-up)
            saved = json.loads(path.read_text(encoding="utf-8"))  # noqa: ASYNC240
            log.info("admin key and default API key: %s", path)
            return str(saved["admin_key"])
        admin_key = ids.new_key()
        await tenants.create_tenant(self.pool, DEFAULT_TENANT, "default")
        _, api_key = await tenants.create_key(self.pool, DEFAULT_TENANT)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"admin_key": admin_key, "tenant": DEFAULT_TENANT, "api_key": api_key}
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(body, f, indent=2)
        os.replace(path.with_suffix(".tmp"), path)
        log.warning("no RAGTUNE_GATEWAY_ADMIN_KEY: generated an admin key and a key for tenant 'default' in %s", path)
        return admin_key
