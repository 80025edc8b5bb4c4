"""The background side of ``/v1/evaluations``: a worker that runs evaluations as leased jobs from
the queue in PostgreSQL, with the harness of :mod:`ragtune_eval`.

Any gateway process may run one (``RAGTUNE_GATEWAY_EVALUATION_WORKERS`` evaluations at once; 0 = it
only serves requests), and ``ragtune-gateway-worker`` runs one without serving HTTP. A worker claims
the oldest evaluation no live lease holds, renews its lease while it runs and records everything in
PostgreSQL under that lease (:mod:`ragtune_gateway.services.evaluation_store`), so a worker that is
killed loses nothing answered: when its lease lapses, any other worker resumes the run from its last
answered question, and a worker that lost its lease (cancelled, deleted, taken over) stops without
writing. A worker stopped on purpose gives its leases back at once.

The harness is a REST client; here it calls the app in-process (httpx's ASGI transport) with a
short-lived API key of the tenant, made for the run and revoked after it, so every call goes through
the same authentication, tenancy and routes as a client's."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import httpx
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp

from ragtune_eval.client import GatewayClient
from ragtune_eval.dataset import Split, load_qa, split_dataset
from ragtune_eval.report import CHART_NAME, HTML_NAME
from ragtune_eval.runner import QaEvalConfig, QaEvaluation
from ragtune_gateway.repositories import evaluations as repository
from ragtune_gateway.repositories import tenants
from ragtune_gateway.repositories.evaluations import EvaluationRow
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.services.evaluation_store import DbProgress, DbRunStore, LeaseLost

log = logging.getLogger(__name__)

JOB_KEY_LEASES = 3  # a job's key outlives its last extension by this many lease periods

REPORT_FILES = {"report.md": "text/markdown", CHART_NAME: "image/svg+xml", HTML_NAME: "text/html"}
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


def build_config(request: dict[str, Any], dataset_name: str) -> QaEvalConfig:
    values = {k: request[k] for k in CONFIG_KEYS if request.get(k) is not None}
    return QaEvalConfig(
        dataset=dataset_name, arms=tuple(request["arms"]), concurrency=request.get("concurrency") or 4, **values
    )


def load_split(dataset: bytes, name: str, folder: Path, request: dict[str, Any]) -> Split:
    """The evaluation's train/test split of its dataset (CPU work: run it in a thread)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(dataset)
    return split_dataset(load_qa(path), request["train"], request["test"], request["seed"], request["train_sample"])


def read_report_files(folder: Path) -> dict[str, tuple[str, bytes]]:
    return {name: (media, (folder / name).read_bytes()) for name, media in REPORT_FILES.items()}


class LeasedJob(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def tenant_id(self) -> str: ...


class JobKind(Protocol):
    """A queue of leased jobs the worker takes from (:mod:`ragtune_gateway.repositories.leases`)."""

    async def claim(self, pool: AsyncConnectionPool, owner: str, lease_s: float) -> LeasedJob | None: ...
    async def renew(self, pool: AsyncConnectionPool, job_id: str, owner: str, lease_s: float) -> bool: ...
    async def release(self, pool: AsyncConnectionPool, job_id: str, owner: str) -> bool: ...
    async def run(self, worker: EvaluationWorker, job: Any) -> None:
        """Carry the job out, writing only under the lease (:class:`LeaseLost` when it is gone)."""


class EvaluationWorker:
    """Claims and runs leased jobs — the evaluations and the eval runs — ``slots`` at a time, in
    this event loop."""

    def __init__(self, runtime: GatewayRuntime, app: ASGIApp, extra_kinds: tuple[JobKind, ...] = ()) -> None:
        self.runtime, self.app = runtime, app
        settings = runtime.settings
        self.slots, self.lease_s, self.poll_s = (
            settings.evaluation_workers,
            settings.evaluation_lease_s,
            settings.evaluation_poll_s,
        )
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.kinds: list[JobKind] = [QaEvaluations(), *extra_kinds]
        self.running: dict[str, tuple[JobKind, asyncio.Task[None]]] = {}
        self.wake = asyncio.Event()
        self.loop: asyncio.Task[None] | None = None

    @property
    def scratch(self) -> Path:
        return self.runtime.settings.scratch_dir / "evaluations"

    async def start(self) -> None:
        if self.slots == 0:
            return
        await asyncio.to_thread(shutil.rmtree, self.scratch, True)  # what a killed process left
        self.loop = asyncio.create_task(self._claim_loop(), name="evaluation-worker")

    def poke(self) -> None:
        """Look for work now (an evaluation was just created)."""
        self.wake.set()

    async def stop(self, job_id: str) -> None:
        """Stop the job ``job_id`` if this worker runs it (it was cancelled or deleted)."""
        task = self.running[job_id][1] if job_id in self.running else None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def close(self) -> None:
        """Stop claiming and running; give the leases back so another worker resumes at once."""
        if self.loop is not None:
            self.loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.loop
        held = [(job_id, kind) for job_id, (kind, _) in self.running.items()]
        tasks = [task for _, task in self.running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for job_id, kind in held:
            with contextlib.suppress(Exception):
                await kind.release(self.runtime.pool, job_id, self.owner)

    async def _claim_loop(self) -> None:
        while True:
            try:
                for kind in self.kinds:
                    while len(self.running) < self.slots:
                        job = await kind.claim(self.runtime.pool, self.owner, self.lease_s)
                        if job is None:
                            break
                        log.info("%s claimed (attempt %d) by %s", job.id, job.attempts, self.owner)
                        task = asyncio.create_task(self._run(kind, job), name=f"job-{job.id}")
                        self.running[job.id] = (kind, task)
                        task.add_done_callback(functools.partial(self._done, job.id))
            except Exception:  # the database is away: try again at the next tick
                log.warning("evaluation worker: could not claim work", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll_s)
            self.wake.clear()

    def _done(self, evaluation_id: str, _: asyncio.Task[None]) -> None:
        self.running.pop(evaluation_id, None)
        self.wake.set()  # a slot is free

    async def _run(self, kind: JobKind, job: LeasedJob) -> None:
        run_task = asyncio.current_task()
        assert run_task is not None
        heartbeat = asyncio.create_task(self._heartbeat(kind, job.id, run_task))
        try:
            await kind.run(self, job)
        except LeaseLost:
            log.info("%s: no longer held by %s; stopped", job.id, self.owner)
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, kind: JobKind, job_id: str, run_task: asyncio.Task[None]) -> None:
        """Renew the lease; stop the job as soon as it is no longer this worker's."""
        while True:
            await asyncio.sleep(self.lease_s / 4)
            try:
                held = await kind.renew(self.runtime.pool, job_id, self.owner, self.lease_s)
            except Exception:  # the database is away: the writes are fenced, try again
                log.warning("%s: could not renew the lease", job_id, exc_info=True)
                continue
            if not held:
                log.info("%s: cancelled, deleted or taken over; stopping it here", job_id)
                run_task.cancel()
                return

    def gave_up(self, job: LeasedJob) -> str | None:
        """Why a job whose workers kept dying is not tried again (None: try it)."""
        if job.attempts > self.runtime.settings.evaluation_max_attempts:
            return f"Stopped after {job.attempts - 1} attempts whose worker died while running it."
        return None

    @contextlib.asynccontextmanager
    async def client(self, tenant: str) -> AsyncIterator[GatewayClient]:
        """A REST client of this gateway's own app, in-process, with a key of the tenant made for
        the job and revoked after it. The key expires :data:`JOB_KEY_LEASES` leases after its last
        extension, and is extended while the job runs: a worker killed before revoking it leaves
        no key that stays valid."""
        valid_s = JOB_KEY_LEASES * self.lease_s
        key_row, key = await tenants.create_key(self.runtime.pool, tenant, expires_in_s=valid_s)
        keeper = asyncio.create_task(self._keep_key(key_row.id, valid_s), name=f"job-key-{key_row.id}")
        transport = httpx.ASGITransport(app=self.app)
        try:
            async with GatewayClient("http://gateway.internal", key, transport=transport) as client:
                yield client
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            with contextlib.suppress(Exception):
                await tenants.revoke_key(self.runtime.pool, key_row.id)
            self.runtime.forget_key(key)

    async def _keep_key(self, key_id: str, valid_s: float) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 4)
            try:
                await tenants.extend_key(self.runtime.pool, key_id, valid_s)
            except Exception:  # the database is away: the key has leases of slack, try again
                log.warning("could not extend the job key %s", key_id, exc_info=True)


class QaEvaluations:
    """The four-arm QA evaluations of ``/v1/evaluations``."""

    async def claim(self, pool: AsyncConnectionPool, owner: str, lease_s: float) -> EvaluationRow | None:
        return await repository.claim(pool, owner, lease_s)

    async def renew(self, pool: AsyncConnectionPool, job_id: str, owner: str, lease_s: float) -> bool:
        return await repository.renew(pool, job_id, owner, lease_s)

    async def release(self, pool: AsyncConnectionPool, job_id: str, owner: str) -> bool:
        return await repository.release(pool, job_id, owner)

    async def run(self, worker: EvaluationWorker, row: EvaluationRow) -> None:
        pool, owner = worker.runtime.pool, worker.owner
        request = row.request
        if (message := worker.gave_up(row)) is not None:
            await repository.finish(pool, row.id, owner, "failed", error=message)
            return
        name = request["dataset_name"]
        dataset = await repository.get_file(pool, row.id, name)
        if dataset is None:  # an evaluation created by a version that kept it on one gateway's disk
            message = "Its dataset was kept on a gateway's disk by an older version and is gone; create it again."
            await repository.finish(pool, row.id, owner, "failed", error=message)
            return
        folder = worker.scratch / row.id
        progress = DbProgress(pool, row.id, owner, row.progress)
        try:
            split = await asyncio.to_thread(load_split, dataset[1], name, folder, request)
            run = DbRunStore(pool, row, owner, folder)
            promote = request.get("promote")
            async with worker.client(row.tenant_id) as client:
                built = await QaEvaluation(client, split, build_config(request, name), run, progress).execute(
                    (promote["alias"], promote["arm"]) if promote else None
                )
            files = await asyncio.to_thread(read_report_files, folder)
        except (asyncio.CancelledError, LeaseLost):
            await progress.drain()
            raise
        except Exception as exc:  # the run's own error, recorded for the tenant (no traceback)
            log.exception("evaluation %s failed", row.id)
            await progress.drain()
            message = (str(exc) or type(exc).__name__)[:2000]
            await repository.finish(pool, row.id, owner, "failed", error=message, progress=progress.snapshot())
            return
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        await progress.drain()
        built.pop("files", None)
        report = json.loads(json.dumps(built))  # plain JSON (no tuples)
        finished = await repository.finish(
            pool,
            row.id,
            owner,
            "succeeded",
            report=report,
            promotion=built.get("promotion"),
            progress=progress.snapshot(),
            files=files,
        )
        if not finished:
            raise LeaseLost(row.id)
