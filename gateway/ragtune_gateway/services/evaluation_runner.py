"""The background side of ``/v1/evaluations``: runs the gateway's evaluations one at a time, in a
task of the gateway's event loop, with the harness of :mod:`ragtune_eval`.

The harness is a REST client; here it calls the app in-process (httpx's ASGI transport) with a
short-lived API key of the tenant, made for the run and revoked after it, so every call goes through
the same authentication, tenancy and routes as a client's. The request and the outcome live in
``gateway.evaluations``; the answers, jobs and store live in a run directory under the state
directory, so a gateway that stops mid-run picks the evaluation up at its next start and asks
nothing twice. An advisory lock keeps two gateways from running the same evaluation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp

from ragtune_common.statuses import FINAL
from ragtune_eval.client import GatewayClient
from ragtune_eval.dataset import load_qa, split_dataset
from ragtune_eval.rundir import RunDir
from ragtune_eval.runner import QaEvalConfig, QaEvaluation
from ragtune_gateway.repositories import evaluations as repository
from ragtune_gateway.repositories import tenants
from ragtune_gateway.repositories.evaluations import ACTIVE, NOW, EvaluationRow
from ragtune_gateway.runtime import GatewayRuntime

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0
ORPHAN_AGE_S = 3600.0  # a run directory younger than this may belong to an evaluation being created
CONFIG_KEYS = (
    "train",
    "test",
    "seed",
    "train_sample",
    "top_k",
    "mode",
    "max_tokens",
    "epochs",
    "raft_epochs",
    "raft_train",
    "max_seq_length",
    "raft_recipe",
    "distractors",
    "no_gold_fraction",
    "reasoning_max_tokens",
    "paraphrases",
    "promotion_level",
)


class DbProgress:
    """The run's progress as the evaluation row's ``progress`` (throttled), and its log lines."""

    def __init__(self, pool: AsyncConnectionPool, evaluation_id: str) -> None:
        self.pool, self.id = pool, evaluation_id
        self.steps: dict[str, dict[str, Any]] = {}
        self.last = 0.0
        self.pending: asyncio.Task[None] | None = None

    def start(self, key: str, description: str, total: int | None) -> None:
        self.steps.setdefault(key, {"description": description, "completed": 0, "total": total, "note": ""})
        self._flush(force=True)

    def update(self, key: str, completed: int, total: int | None = None, note: str = "") -> None:
        step = self.steps.setdefault(key, {"description": key, "completed": 0, "total": total, "note": ""})
        step.update(completed=completed, note=note, **({"total": total} if total else {}))
        self._flush(force=bool(step["total"]) and completed >= step["total"])

    def log(self, message: str) -> None:
        log.info("evaluation %s: %s", self.id, message)

    def _flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_EVERY_S:
            return
        if self.pending is not None and not self.pending.done():
            return  # the next update writes the newer figures
        self.last = now
        self.pending = asyncio.create_task(repository.update(self.pool, self.id, progress=self._snapshot()))

    def _snapshot(self) -> dict[str, Any]:
        return {"steps": [{"key": k, **v} for k, v in self.steps.items()]}

    async def drain(self) -> None:
        """Wait for the write in flight, then write the latest figures (a throttled update may
        have been skipped while it ran)."""
        if self.pending is not None:
            with contextlib.suppress(Exception):
                await self.pending
        with contextlib.suppress(Exception):
            await repository.update(self.pool, self.id, progress=self._snapshot())


def build_config(request: dict[str, Any], dataset_name: str) -> QaEvalConfig:
    values = {k: request[k] for k in CONFIG_KEYS if request.get(k) is not None}
    return QaEvalConfig(
        dataset=dataset_name, arms=tuple(request["arms"]), concurrency=request.get("concurrency") or 4, **values
    )


class EvaluationRunner:
    """Runs the gateway's evaluations one at a time, in this event loop."""

    def __init__(self, runtime: GatewayRuntime, app: ASGIApp) -> None:
        self.runtime, self.app = runtime, app
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.turn = asyncio.Lock()

    @property
    def root(self) -> Path:
        return self.runtime.settings.gateway_dir / "evaluations"

    def run_dir(self, evaluation_id: str) -> Path:
        return self.root / evaluation_id

    async def resume(self) -> None:
        """Pick up the evaluations a stopped gateway left queued or running; sweep the run
        directories of deleted ones."""
        for evaluation_id in await repository.active_ids(self.runtime.pool):
            self.submit(evaluation_id)
        await self.sweep_run_dirs()

    async def sweep_run_dirs(self) -> int:
        """Remove run directories older than :data:`ORPHAN_AGE_S` whose evaluation is gone; their number."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - ORPHAN_AGE_S
        candidates = {p.name: p for p in self.root.iterdir() if p.is_dir() and p.stat().st_mtime < cutoff}
        if not candidates:
            return 0
        orphans = set(candidates) - await repository.existing_ids(self.runtime.pool, list(candidates))
        for name in orphans:
            log.info("removing the run directory of deleted evaluation %s", name)
            await asyncio.to_thread(shutil.rmtree, candidates[name], True)
        return len(orphans)

    def submit(self, evaluation_id: str) -> None:
        if evaluation_id not in self.tasks or self.tasks[evaluation_id].done():
            task = asyncio.create_task(self._run(evaluation_id), name=f"evaluation-{evaluation_id}")
            self.tasks[evaluation_id] = task

    async def cancel(self, row: EvaluationRow) -> None:
        """Stop the run (if it is here) and its unfinished fine-tuning jobs; mark it cancelled."""
        task = self.tasks.get(row.id)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await repository.update(self.runtime.pool, row.id, status="cancelled", finished_at=NOW)
        jobs = (RunDir(self.run_dir(row.id)).state.get("jobs") or {}) if self.run_dir(row.id).exists() else {}
        unfinished = [j["job_id"] for j in jobs.values() if j.get("status") not in FINAL]
        if unfinished:
            async with self._client(row.tenant_id) as client:
                for job_id in unfinished:
                    with contextlib.suppress(Exception):
                        await client.call("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel")

    async def close(self) -> None:
        """Stop the runs; they stay ``running`` and resume at the next start."""
        for task in self.tasks.values():
            task.cancel()
        for task in self.tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @contextlib.asynccontextmanager
    async def _client(self, tenant: str) -> AsyncIterator[GatewayClient]:
        key_row, key = await tenants.create_key(self.runtime.pool, tenant)
        transport = httpx.ASGITransport(app=self.app)
        try:
            async with GatewayClient("http://gateway.internal", key, transport=transport) as client:
                yield client
        finally:
            await tenants.revoke_key(self.runtime.pool, key_row.id)
            self.runtime.forget_key(key)

    async def _run(self, evaluation_id: str) -> None:
        async with self.turn, repository.run_lock(self.runtime.pool, evaluation_id) as mine:
            if mine:  # else another gateway runs it
                await self._execute(evaluation_id)

    async def _execute(self, evaluation_id: str) -> None:
        pool = self.runtime.pool
        row = await repository.get(pool, None, evaluation_id)
        if row is None or row.status not in ACTIVE:
            return
        await repository.update(pool, evaluation_id, status="running", started_at=row.started_at or NOW)
        request = row.request
        run = RunDir(self.run_dir(evaluation_id))
        progress = DbProgress(pool, evaluation_id)
        try:
            dataset = run.path / request["dataset_name"]
            split = split_dataset(
                load_qa(dataset), request["train"], request["test"], request["seed"], request["train_sample"]
            )
            config = build_config(request, request["dataset_name"])
            promote = request.get("promote")
            async with self._client(row.tenant_id) as client:
                built = await QaEvaluation(client, split, config, run, progress).execute(
                    (promote["alias"], promote["arm"]) if promote else None
                )
        except asyncio.CancelledError:
            await progress.drain()
            raise
        except Exception as exc:  # the run's own error, recorded for the tenant (no traceback)
            log.exception("evaluation %s failed", evaluation_id)
            await progress.drain()
            message = str(exc) or type(exc).__name__
            await repository.update(pool, evaluation_id, status="failed", error=message[:2000], finished_at=NOW)
            return
        await progress.drain()
        built.pop("files", None)
        report = json.loads(json.dumps(built))  # plain JSON (no tuples)
        await repository.update(
            pool, evaluation_id, status="succeeded", report=report, promotion=built.get("promotion"), finished_at=NOW
        )
