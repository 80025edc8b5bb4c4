"""An evaluation's resumable record in PostgreSQL, written by the worker that holds its lease: the
harness's :class:`~ragtune_eval.rundir.RunStore` (settings, state, one row per answered question)
and its progress. Every write is fenced by the lease (:mod:`ragtune_gateway.repositories.evaluations`):
a worker that lost it gets :class:`LeaseLost` at its next write and stops, having changed nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ragtune_eval.rundir import RunDirError, RunStore, changed_settings
from ragtune_gateway.repositories import evaluations as repository
from ragtune_gateway.repositories.evaluations import EvaluationRow

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0


class LeaseLost(Exception):
    """This worker no longer holds the evaluation: it was cancelled or deleted, or another worker
    took it over after this one's lease lapsed."""


class DbRunStore(RunStore):
    def __init__(self, pool: AsyncConnectionPool, row: EvaluationRow, owner: str, path: Path) -> None:
        self.pool, self.id, self.owner, self.path = pool, row.id, owner, path
        self.state = dict(row.state)
        self._config = row.config

    def _held(self, written: bool) -> None:
        if not written:
            raise LeaseLost(self.id)

    async def check_config(self, config: dict[str, Any]) -> None:
        if self._config is None:
            self._held(await repository.record(self.pool, self.id, self.owner, config=config))
            self._config = config
        elif changed := changed_settings(self._config, config):
            raise RunDirError(f"evaluation {self.id} was started with other settings ({', '.join(changed)})")

    async def save_state(self) -> None:
        self._held(await repository.record(self.pool, self.id, self.owner, state=self.state))

    async def results(self, arm: str) -> list[dict[str, Any]]:
        return await repository.results(self.pool, self.id, arm)

    async def append_result(self, arm: str, row: dict[str, Any]) -> None:
        self._held(await repository.append_result(self.pool, self.id, self.owner, arm, row))


class DbProgress:
    """The run's progress as the evaluation row's ``progress`` (throttled, fenced), and its log lines."""

    def __init__(self, pool: AsyncConnectionPool, evaluation_id: str, owner: str, before: dict[str, Any]) -> None:
        self.pool, self.id, self.owner = pool, evaluation_id, owner
        self.steps: dict[str, dict[str, Any]] = {s["key"]: s for s in before.get("steps", []) if "key" in s}
        self.last = 0.0
        self.pending: asyncio.Task[bool] | None = None

    def start(self, key: str, description: str, total: int | None) -> None:
        self.steps[key] = {"key": key, "description": description, "completed": 0, "total": total, "note": ""}
        self._flush(force=True)

    def update(self, key: str, completed: int, total: int | None = None, note: str = "") -> None:
        step = self.steps.setdefault(key, {"key": key, "description": key, "completed": 0, "total": total, "note": ""})
        step.update(completed=completed, note=note, **({"total": total} if total else {}))
        self._flush(force=bool(step["total"]) and completed >= step["total"])

    def log(self, message: str) -> None:
        log.info("evaluation %s: %s", self.id, message)

    def snapshot(self) -> dict[str, Any]:
        return {"steps": list(self.steps.values())}

    def _flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_EVERY_S:
            return
        if self.pending is not None and not self.pending.done():
            return  # the next update writes the newer figures
        self.last = now
        self.pending = asyncio.create_task(repository.record(self.pool, self.id, self.owner, progress=self.snapshot()))

    async def drain(self) -> None:
        """Wait for the write in flight (the finishing write carries the latest figures)."""
        if self.pending is not None:
            with contextlib.suppress(Exception):
                await self.pending
