"""All SQL of the trainer: datasets, jobs, job events and checkpoints (schema ``trainer``).

A job's state changes and the events that announce them are written in one transaction; the job
row's ``event_seq`` is bumped under its row lock, so each job's events are numbered without gaps
in commit order (watchers that read "after seq N" never miss one). The queue and its leases are in
``leases``.

Status changes are conditional: each write's WHERE clause names the states it may leave
(``TRANSITIONS``) and, for the replica training the job, its lease. A job a request has cancelled,
or that has finished, is therefore never moved again by a worker's late write: the writer gets
:class:`JobFinished` (nothing written) and stops. A cancel is honoured until the trained adapter is
recorded (``record_trained``); from then on the job is publishing and a cancel is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ragtune_common.errors import FailedPrecondition, NotFound
from ragtune_common.statuses import FINAL
from ragtune_trainer.jobspec import JobConfig

ACTIVE = ("validating_files", "queued", "running")
TRANSITIONS: dict[str, tuple[str, ...]] = {  # status -> the statuses a write may move a job from into it
    "validating_files": ("queued",),
    "running": ("validating_files", "running"),  # "running" again: a replica that resumes the job
    "succeeded": ("running",),
    "failed": ACTIVE,
    "cancelled": ACTIVE,
}


@dataclass(frozen=True)
class DatasetRow:
    id: str
    tenant: str
    filename: str
    format: str
    source: str
    path: str
    example_count: int
    byte_count: int
    token_count: int
    max_example_tokens: int
    created_at: datetime


@dataclass(frozen=True)
class JobRow:
    id: str
    tenant: str
    base_model: str
    status: str
    training_file: str
    validation_file: str | None
    config: JobConfig
    fine_tuned_model: str | None
    error: dict[str, Any] | None
    cancel_requested: bool
    step: int
    total_steps: int
    trained_tokens: int
    trained_token_fraction: float
    train_loss: float
    eval_loss: float
    adapter_path: str | None
    publish_state: str
    publish_error: str
    resume_count: int
    cpu_seconds: float
    lease_owner: str | None  # the replica training the job now
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class EventRow:
    job_id: str
    seq: int
    kind: str
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class CheckpointRow:
    step: int
    path: str
    created_at: datetime


Event = tuple[str, dict[str, Any]]


class LeaseLost(Exception):
    """This replica no longer holds the job's lease: another one has taken the job over."""


class JobFinished(LeaseLost):
    """The job is no longer in a state this write may move it from (a request cancelled it, or it
    has finished): nothing was written, and the writer has lost the job as if its lease had gone."""


async def _hold(conn: psycopg.AsyncConnection, job_id: str, owner: str | None) -> None:
    """Fence: lock the job row and check that ``owner`` (when given) still holds its lease on a job
    that has not finished."""
    if owner is None:
        return
    cur = await conn.execute(
        "SELECT status FROM trainer.jobs WHERE id = %s AND lease_owner = %s FOR UPDATE", (job_id, owner)
    )
    row = await cur.fetchone()
    if row is None:
        raise LeaseLost(f"job {job_id} is no longer held by {owner}")
    if row[0] in FINAL:
        raise JobFinished(f"job {job_id} is already {row[0]}")


JOB_COLUMNS = sql.SQL(", ").join(
    sql.Identifier(name) for name in JobRow.__dataclass_fields__ if name != "config"
) + sql.SQL(", config")


def job_row(row: dict[str, Any]) -> JobRow:
    return JobRow(**{**row, "config": JobConfig.from_json(row["config"])})


async def insert_dataset(pool: AsyncConnectionPool, row: DatasetRow) -> DatasetRow:
    values = {k: v for k, v in row.__dict__.items() if k != "created_at"}
    query = sql.SQL("INSERT INTO trainer.datasets ({}) VALUES ({}) RETURNING created_at").format(
        sql.SQL(", ").join(map(sql.Identifier, values)), sql.SQL(", ").join(map(sql.Placeholder, values))
    )
    async with pool.connection() as conn:
        created = await (await conn.execute(query, values)).fetchone()
    assert created is not None
    return DatasetRow(**{**values, "created_at": created[0]})


async def get_dataset(pool: AsyncConnectionPool, tenant: str, dataset_id: str, field: str) -> DatasetRow:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT * FROM trainer.datasets WHERE tenant = %s AND id = %s", (tenant, dataset_id))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no dataset {dataset_id!r}", field=field)
    return DatasetRow(**row)


async def _append_events(conn: psycopg.AsyncConnection, job_id: str, events: Sequence[Event]) -> None:
    for kind, data in events:
        await conn.execute(
            "WITH bumped AS (UPDATE trainer.jobs SET event_seq = event_seq + 1 WHERE id = %s RETURNING event_seq)"
            " INSERT INTO trainer.job_events (job_id, seq, kind, data) SELECT %s, event_seq, %s, %s FROM bumped",
            (job_id, job_id, kind, Jsonb(data)),
        )


async def insert_job(
    pool: AsyncConnectionPool,
    job_id: str,
    tenant: str,
    base_model: str,
    training_file: str,
    validation_file: str | None,
    config: JobConfig,
) -> JobRow:
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO trainer.jobs (id, tenant, base_model, status, training_file, validation_file, config,"
            " total_steps) VALUES (%s, %s, %s, 'queued', %s, %s, %s, %s)",
            (job_id, tenant, base_model, training_file, validation_file, Jsonb(config.to_json()), config.total_steps),
        )
        await _append_events(conn, job_id, [("status", {"status": "queued", "message": "job created"})])
    return await get_job(pool, tenant, job_id)


async def get_job(pool: AsyncConnectionPool, tenant: str | None, job_id: str) -> JobRow:
    query = sql.SQL("SELECT {} FROM trainer.jobs WHERE id = %s").format(JOB_COLUMNS)
    params: list[Any] = [job_id]
    if tenant is not None:
        query += sql.SQL(" AND tenant = %s")
        params.append(tenant)
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query, params)
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no job {job_id!r}", field="id")
    return job_row(row)


async def list_jobs(pool: AsyncConnectionPool, tenant: str, before: str, limit: int) -> list[JobRow]:
    query = sql.SQL("SELECT {} FROM trainer.jobs WHERE tenant = %s AND (%s = '' OR id < %s) ORDER BY id DESC LIMIT %s")
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query.format(JOB_COLUMNS), (tenant, before, before, limit))
        return [job_row(row) for row in await cur.fetchall()]


async def update_job(
    pool: AsyncConnectionPool,
    job_id: str,
    changes: dict[str, Any],
    events: Sequence[Event] = (),
    owner: str | None = None,
) -> None:
    """Apply column changes and append events in one transaction. Values 'now()' become the time.
    With ``owner``, only while that replica holds the lease of the unfinished job (else LeaseLost,
    nothing written). A new ``status`` is written only from the states ``TRANSITIONS`` allows
    (else JobFinished, nothing written)."""
    async with pool.connection() as conn, conn.transaction():
        await _hold(conn, job_id, owner)
        if changes and not await _set(conn, job_id, changes) and "status" in changes:
            raise JobFinished(f"job {job_id} may no longer become {changes['status']}")
        await _append_events(conn, job_id, events)


async def _set(conn: psycopg.AsyncConnection, job_id: str, changes: dict[str, Any], condition: str = "") -> bool:
    """Update the job's columns if its status allows (see update_job) and ``condition`` (fixed SQL
    from this module) holds; False if nothing was written."""
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = now()").format(sql.Identifier(k))
        if v == "now()"
        else sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k))
        for k, v in changes.items()
    )
    params = {k: Jsonb(v) if isinstance(v, dict) else v for k, v in changes.items() if v != "now()"}
    params["_job_id"] = job_id
    query = sql.SQL("UPDATE trainer.jobs SET {} WHERE id = %(_job_id)s").format(assignments)
    if "status" in changes:
        params["_from"] = list(TRANSITIONS[changes["status"]])
        query += sql.SQL(" AND status = ANY(%(_from)s)")
    if condition:
        query += sql.SQL(" AND ") + sql.SQL(condition)
    cur = await conn.execute(query, params)
    return cur.rowcount == 1


async def record_trained(pool: AsyncConnectionPool, job_id: str, changes: dict[str, Any], owner: str) -> bool:
    """Record the trained adapter of a running job unless a cancel was requested first (False: the
    caller finishes the job as cancelled). Once this is written a cancel is refused."""
    async with pool.connection() as conn, conn.transaction():
        await _hold(conn, job_id, owner)
        return await _set(conn, job_id, changes, "status = 'running' AND NOT cancel_requested")


async def claim_job(pool: AsyncConnectionPool, job_id: str, owner: str) -> bool:
    """Move a queued job (leased by ``owner``) to validating_files; False if it is no longer queued
    or a cancel was requested, JobFinished if it has finished (a request cancelled it)."""
    async with pool.connection() as conn, conn.transaction():
        await _hold(conn, job_id, owner)
        cur = await conn.execute(
            "UPDATE trainer.jobs SET status = 'validating_files', started_at = now()"
            " WHERE id = %s AND status = 'queued' AND NOT cancel_requested",
            (job_id,),
        )
        if cur.rowcount != 1:
            return False
        event = {"status": "validating_files", "message": "tokenizing and checking the datasets"}
        await _append_events(conn, job_id, [("status", event)])
    return True


async def request_cancel(pool: AsyncConnectionPool, tenant: str, job_id: str) -> JobRow:
    """Queued: cancelled at once. Validating or running: flagged for the runner to stop. Finished,
    or trained and publishing its adapter: refused (FailedPrecondition)."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT status, adapter_path FROM trainer.jobs WHERE tenant = %s AND id = %s FOR UPDATE", (tenant, job_id)
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no job {job_id!r}", field="id")
        if row[0] in FINAL:
            raise FailedPrecondition(f"job {job_id} already {row[0]}", field="id")
        if row[1] is not None:
            raise FailedPrecondition(f"job {job_id} has finished training and is publishing its adapter", field="id")
        if row[0] == "queued":
            await conn.execute(
                "UPDATE trainer.jobs SET status = 'cancelled', cancel_requested = true, finished_at = now()"
                " WHERE id = %s AND status = 'queued'",
                (job_id,),
            )
            await _append_events(conn, job_id, [("status", {"status": "cancelled", "message": "cancelled"})])
        else:
            await conn.execute("UPDATE trainer.jobs SET cancel_requested = true WHERE id = %s", (job_id,))
    return await get_job(pool, tenant, job_id)


async def events_after(pool: AsyncConnectionPool, job_id: str, after_seq: int, limit: int = 500) -> list[EventRow]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT job_id, seq, kind, data, created_at FROM trainer.job_events"
            " WHERE job_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (job_id, after_seq, limit),
        )
        return [EventRow(**row) for row in await cur.fetchall()]


async def add_checkpoint(
    pool: AsyncConnectionPool, job_id: str, step: int, path: str, kept: Sequence[str], owner: str | None = None
) -> None:
    """Record a complete checkpoint and forget those the training process has deleted since."""
    async with pool.connection() as conn, conn.transaction():
        await _hold(conn, job_id, owner)
        await conn.execute(
            "INSERT INTO trainer.checkpoints (job_id, step, path) VALUES (%s, %s, %s)"
            " ON CONFLICT (job_id, step) DO UPDATE SET path = EXCLUDED.path, created_at = now()",
            (job_id, step, path),
        )
        await conn.execute(
            "DELETE FROM trainer.checkpoints WHERE job_id = %s AND NOT (path = ANY(%s))", (job_id, [path, *kept])
        )
        await _append_events(conn, job_id, [("checkpoint", {"step": step, "path": path})])


async def list_checkpoints(pool: AsyncConnectionPool, job_id: str) -> list[CheckpointRow]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT step, path, created_at FROM trainer.checkpoints WHERE job_id = %s ORDER BY step", (job_id,)
        )
        return [CheckpointRow(**row) for row in await cur.fetchall()]
