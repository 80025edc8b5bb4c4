"""Evaluations run by the gateway itself (``POST /v1/evaluations``): the same four-arm QA evaluation
as ``ragtune eval squad``, driven from inside the gateway through its own REST API.

Each evaluation runs in a task of the gateway's event loop, one at a time, and calls the app
in-process (httpx's ASGI transport) with a short-lived API key of the tenant, made for the run and
revoked after it, so every call goes through the same authentication, tenancy and routes as a
client's. The request and the outcome live in ``gateway.evaluations``; the answers, jobs and store
live in a run directory under the state directory, so a gateway that stops mid-run picks the
evaluation up at its next start and asks nothing twice. An advisory lock keeps two gateways from
running the same evaluation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp

from ragtune_eval.client import GatewayClient
from ragtune_eval.dataset import load_qa, split_dataset
from ragtune_eval.rundir import RunDir
from ragtune_eval.runner import QaEvalConfig, QaEvaluation
from ragtune_gateway import store
from ragtune_gateway.runtime import GatewayRuntime

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class EvaluationRow:
    id: str
    tenant_id: str
    status: str
    request: dict[str, Any]
    progress: dict[str, Any]
    report: dict[str, Any] | None
    promotion: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


_COLUMNS = "id, tenant_id, status, request, progress, report, promotion, error, created_at, started_at, finished_at"


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


def evaluation_object(row: EvaluationRow) -> dict[str, Any]:
    report = row.report
    if report and isinstance(report.get("arms"), dict):  # jsonb keeps no key order: the arms' own
        arms = report["arms"]
        report = {**report, "arms": {a: arms[a] for a in row.request.get("arms", []) if a in arms}}
    return {
        "id": row.id,
        "object": "evaluation",
        "status": row.status,
        "created_at": _ts(row.created_at),
        "started_at": _ts(row.started_at),
        "finished_at": _ts(row.finished_at),
        "request": row.request,
        "progress": row.progress,
        "report": report,
        "promotion": row.promotion,
        "error": {"message": row.error} if row.error else None,
    }


async def count_active(conn: AsyncConnection, tenant: str) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM gateway.evaluations WHERE tenant_id = %s AND status IN ('queued', 'running')", (tenant,)
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def insert(conn: AsyncConnection, evaluation_id: str, tenant: str, request: dict[str, Any]) -> EvaluationRow:
    """On the caller's connection: the one that holds the tenant's cap lock (``limits.tenant_cap``)."""
    cur = conn.cursor(row_factory=class_row(EvaluationRow))
    await cur.execute(
        f"INSERT INTO gateway.evaluations (id, tenant_id, status, request) VALUES (%s, %s, 'queued', %s)"
        f" RETURNING {_COLUMNS}",
        (evaluation_id, tenant, Jsonb(request)),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def delete_finished(pool: AsyncConnectionPool, tenant: str, evaluation_id: str) -> bool:
    """Delete the tenant's evaluation if it is finished (an active one stays)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM gateway.evaluations WHERE id = %s AND tenant_id = %s"
            " AND status IN ('succeeded', 'failed', 'cancelled')",
            (evaluation_id, tenant),
        )
        return cur.rowcount > 0


async def existing_ids(pool: AsyncConnectionPool, ids: list[str]) -> set[str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM gateway.evaluations WHERE id = ANY(%s)", (ids,))
        return {str(r[0]) for r in await cur.fetchall()}


async def get(pool: AsyncConnectionPool, tenant: str | None, evaluation_id: str) -> EvaluationRow | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(EvaluationRow))
        await cur.execute(
            f"SELECT {_COLUMNS} FROM gateway.evaluations WHERE id = %s AND (%s::text IS NULL OR tenant_id = %s)",
            (evaluation_id, tenant, tenant),
        )
        return await cur.fetchone()


async def list_for(pool: AsyncConnectionPool, tenant: str, after: str, limit: int) -> list[EvaluationRow]:
    """Oldest first, paged by id."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(EvaluationRow))
        await cur.execute(
            f"SELECT {_COLUMNS} FROM gateway.evaluations WHERE tenant_id = %(t)s"
            " AND (%(a)s = '' OR (created_at, id) > (SELECT created_at, id FROM gateway.evaluations"
            "      WHERE tenant_id = %(t)s AND id = %(a)s))"
            " ORDER BY created_at, id LIMIT %(n)s",
            {"t": tenant, "a": after, "n": limit},
        )
        return await cur.fetchall()


async def _update(pool: AsyncConnectionPool, evaluation_id: str, **changes: Any) -> None:
    sets = ", ".join(f"{k} = now()" if v == "now()" else f"{k} = %({k})s" for k, v in changes.items())
    params = {k: Jsonb(v) if isinstance(v, dict) else v for k, v in changes.items() if v != "now()"}
    async with pool.connection() as conn:
        query = f"UPDATE gateway.evaluations SET {sets} WHERE id = %(_id)s"
        await conn.execute(query, {**params, "_id": evaluation_id})


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
        self.pending = asyncio.create_task(_update(self.pool, self.id, progress=self._snapshot()))

    def _snapshot(self) -> dict[str, Any]:
        return {"steps": [{"key": k, **v} for k, v in self.steps.items()]}

    async def drain(self) -> None:
        """Wait for the write in flight, then write the latest figures (a throttled update may
        have been skipped while it ran)."""
        if self.pending is not None:
            with contextlib.suppress(Exception):
                await self.pending
        with contextlib.suppress(Exception):
            await _update(self.pool, self.id, progress=self._snapshot())


def build_config(request: dict[str, Any], dataset_name: str) -> QaEvalConfig:
    keys = (
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
    )
    values = {k: request[k] for k in keys if request.get(k) is not None}
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
        return self.runtime.settings.state_dir / "gateway" / "evaluations"

    def run_dir(self, evaluation_id: str) -> Path:
        return self.root / evaluation_id

    async def resume(self) -> None:
        """Pick up the evaluations a stopped gateway left queued or running."""
        async with self.runtime.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM gateway.evaluations WHERE status IN ('queued', 'running') ORDER BY created_at, id"
            )
            ids = [str(r[0]) for r in await cur.fetchall()]
        for evaluation_id in ids:
            self.submit(evaluation_id)
        from ragtune_gateway.evaluation_cleanup import sweep_run_dirs

        await sweep_run_dirs(self.runtime, self.root)

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
        await _update(self.runtime.pool, row.id, status="cancelled", finished_at="now()")
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
    async def _client(self, tenant: str) -> Any:
        key_row, key = await store.create_key(self.runtime.pool, tenant)
        transport = httpx.ASGITransport(app=self.app)
        try:
            async with GatewayClient("http://gateway.internal", key, transport=transport) as client:
                yield client
        finally:
            await store.revoke_key(self.runtime.pool, key_row.id)
            self.runtime.forget_key(key)

    async def _run(self, evaluation_id: str) -> None:
        pool = self.runtime.pool
        async with self.turn, pool.connection() as lock:
            got = await (
                await lock.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (f"ragtune-eval:{evaluation_id}",))
            ).fetchone()
            if not got or not got[0]:
                return  # another gateway runs it
            try:
                await self._execute(evaluation_id)
            finally:
                with contextlib.suppress(Exception):
                    await lock.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"ragtune-eval:{evaluation_id}",))

    async def _execute(self, evaluation_id: str) -> None:
        pool = self.runtime.pool
        row = await get(pool, None, evaluation_id)
        if row is None or row.status not in ACTIVE:
            return
        await _update(pool, evaluation_id, status="running", started_at=row.started_at or "now()")
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
            await _update(pool, evaluation_id, status="failed", error=message[:2000], finished_at="now()")
            return
        await progress.drain()
        built.pop("files", None)
        report = json.loads(json.dumps(built))  # plain JSON (no tuples)
        await _update(
            pool,
            evaluation_id,
            status="succeeded",
            report=report,
            promotion=built.get("promotion"),
            finished_at="now()",
        )
