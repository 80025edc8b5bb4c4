"""Writes that must land: retried while the database is unreachable, so that an outage delays a
job's records instead of losing them or failing the job."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
from psycopg_pool import PoolTimeout

log = logging.getLogger(__name__)

T = TypeVar("T")

DATABASE_DOWN = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
"""What an unreachable or restarting database raises (the pool replaces broken connections)."""


async def until_written(
    write: Callable[[], Awaitable[T]], what: str, first_delay_s: float = 0.5, max_delay_s: float = 5.0
) -> T:
    """Run ``write`` until the database takes it, backing off while it is away. Other errors
    (including LeaseLost) go to the caller at once; cancelling the caller stops the retries."""
    delay = first_delay_s
    while True:
        try:
            return await write()
        except DATABASE_DOWN as exc:
            log.warning("%s: database unavailable (%s); retrying in %.1f s", what, str(exc).strip()[:200], delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
