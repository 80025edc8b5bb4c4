"""The retention sweep of stored chat completions: every ``completion_retention_sweep_s``, one
``DELETE`` removes the completions older than their tenant's ``completion_retention_days`` (with
their feedback history), after taking them out of distilled files no job has used. Every gateway
process may run it: the statement is idempotent, so replicas sweeping at once delete each row once
and otherwise find nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import psycopg

from ragtune_gateway.repositories import stored_completions
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.services import distilled_files

log = logging.getLogger(__name__)


async def sweep(runtime: GatewayRuntime) -> int:
    """Deletes what is past its tenant's retention now; how many completions. Expired completions
    are first taken out of unused distilled files (:mod:`.distilled_files`); while the trainer
    cannot be reached for that, the sweep waits for the next round."""
    if not await distilled_files.remove_expired(runtime):
        return 0
    deleted = await stored_completions.delete_expired(runtime.pool)
    if deleted:
        log.info("retention: deleted %d stored chat completions", deleted)
    return deleted


class CompletionRetention:
    def __init__(self, runtime: GatewayRuntime) -> None:
        self.runtime = runtime
        self.interval_s = runtime.settings.completion_retention_sweep_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="completion-retention")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        await asyncio.sleep(random.uniform(0, min(self.interval_s, 60)))  # replicas started together spread out
        while True:
            try:
                await sweep(self.runtime)
            except psycopg.Error as exc:  # the database is down: the next sweep deletes it
                log.warning("retention sweep failed: %s", exc)
            await asyncio.sleep(self.interval_s)
