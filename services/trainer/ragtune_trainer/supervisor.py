"""One run of a job's training process, supervised.

Four tasks run beside the process, none of which can block it: a reader drains its standard output
into a queue at once (a process writing to a full pipe would stall its training); a writer persists
the queued events in order, retrying while the database is away; a keeper renews the job's lease,
and stops the run when the lease is lost (another replica may be resuming the job) or when the
database has been unreachable for most of the lease; a watcher stops it when the job is cancelled.
A failed database read is never taken for a cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ragtune_trainer import leases, store
from ragtune_trainer.durable import DATABASE_DOWN, until_written
from ragtune_trainer.settings import TrainerSettings
from ragtune_trainer.store import LeaseLost

log = logging.getLogger(__name__)

MAX_EVENT_LINE = 1024 * 1024
_END = None


@dataclass(frozen=True)
class Outcome:
    """How a run ended: ``done`` / ``error`` (the process said so), ``crashed`` (it exited without
    saying), ``cancelled``, or ``lease_lost``."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    returncode: int | None = None


class TrainingRun:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        settings: TrainerSettings,
        job_id: str,
        cancel: asyncio.Event,
        cpu_before: float,
        notify: Callable[[], Awaitable[None]],
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.job_id = job_id
        self.owner = settings.replica_id
        self._cancel = cancel
        self._cpu_before = cpu_before  # CPU seconds of the job's earlier runs (before a resume)
        self._notify = notify
        self._process: asyncio.subprocess.Process | None = None

    async def run(self, spec_path: Path) -> Outcome:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ragtune_trainer.train_process",
            str(spec_path),
            stdout=asyncio.subprocess.PIPE,
            limit=MAX_EVENT_LINE,
        )
        queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read(queue))
        writer = asyncio.create_task(self._write(queue))
        watcher = asyncio.create_task(self._watch_cancel())
        keeper = asyncio.create_task(self._keep_lease())
        try:
            done, _ = await asyncio.wait({writer, watcher, keeper}, return_when=asyncio.FIRST_COMPLETED)
            if writer in done:
                if isinstance(writer.exception(), LeaseLost):
                    return Outcome("lease_lost")
                last = writer.result()  # a bug in recording: raised here, the process is stopped below
                returncode = await self._process.wait()
                return Outcome(last[0], last[1], returncode) if last else Outcome("crashed", {}, returncode)
            await self.stop()
            if keeper in done:
                return Outcome("lease_lost")
            with contextlib.suppress(LeaseLost):
                await writer  # what the process reported before it stopped
            return Outcome("cancelled")
        finally:
            for task in (reader, writer, watcher, keeper):
                task.cancel()
            await asyncio.gather(reader, writer, watcher, keeper, return_exceptions=True)
            await self.stop()

    async def stop(self) -> None:
        """Terminate the process (killed after the cancel grace period)."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), self.settings.cancel_grace_s)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def _read(self, queue: asyncio.Queue[tuple[str, dict[str, Any]] | None]) -> None:
        assert self._process is not None and self._process.stdout is not None
        try:
            async for raw in self._process.stdout:
                try:
                    event = json.loads(raw)
                    queue.put_nowait((str(event["kind"]), dict(event["data"])))
                except (ValueError, KeyError, TypeError):
                    log.warning("job %s: unreadable line from the training process: %r", self.job_id, raw[:200])
        except ValueError:  # a line over MAX_EVENT_LINE: the stream cannot be followed further
            log.error("job %s: oversized line from the training process; stopping it", self.job_id)
            await self.stop()
        finally:
            queue.put_nowait(_END)

    async def _write(
        self, queue: asyncio.Queue[tuple[str, dict[str, Any]] | None]
    ) -> tuple[str, dict[str, Any]] | None:
        """Persist progress events in order; returns the final ``done`` / ``error`` one (if any)."""
        last = None
        while (event := await queue.get()) is not _END:
            kind, data = event
            if kind in ("done", "error"):
                last = event
                continue
            await until_written(partial(self._record, kind, data), f"job {self.job_id}: {kind} event")
        return last

    async def _record(self, kind: str, data: dict[str, Any]) -> None:
        job_id, owner = self.job_id, self.owner
        if kind == "started":
            status = ("status", {"status": "running", "message": "training"})
            changes = {
                "status": "running",
                "total_steps": data["total_steps"],
                "trained_token_fraction": data["trained_token_fraction"],
            }
            await store.update_job(self.pool, job_id, changes, [status, ("started", data)], owner)
        elif kind == "progress":
            data = {**data, "cpu_seconds": self._cpu_before + data.get("cpu_seconds", 0.0)}  # over all runs
            changes = {k: data[k] for k in ("step", "total_steps", "train_loss", "trained_tokens", "cpu_seconds")}
            await store.update_job(self.pool, job_id, changes, [("progress", data)], owner)
        elif kind == "eval":
            await store.update_job(self.pool, job_id, {"eval_loss": data["eval_loss"]}, [("eval", data)], owner)
        elif kind == "checkpoint":
            await store.add_checkpoint(self.pool, job_id, data["step"], data["path"], data.get("kept", []), owner)
        else:
            await store.update_job(self.pool, job_id, {}, [(kind, data)], owner)
        await self._notify()

    async def _watch_cancel(self) -> None:
        """Returns when the job is cancelled: here (CancelJob on this replica) or on another replica."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cancel.wait(), self.settings.poll_interval_s)
                return
            try:
                if (await store.get_job(self.pool, None, self.job_id)).cancel_requested:
                    return
            except DATABASE_DOWN as exc:  # not a cancel: asked again at the next poll
                log.debug("job %s: cancel check failed: %s", self.job_id, exc)

    async def _keep_lease(self) -> None:
        """Returns when the lease is lost, or may be: unrenewed for three quarters of its length
        (the rest is the margin before another replica may take the job)."""
        lease_s = self.settings.lease_s
        interval = lease_s / 3
        last_ok = last_try = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, interval))
            if time.monotonic() - last_try >= interval:
                last_try = time.monotonic()
                try:
                    if not await leases.renew_lease(self.pool, self.job_id, self.owner, lease_s):
                        log.warning("job %s: lease taken over by another replica; stopping", self.job_id)
                        return
                    last_ok = time.monotonic()
                except DATABASE_DOWN as exc:
                    log.warning("job %s: lease not renewed (%s)", self.job_id, str(exc).strip()[:200])
            if time.monotonic() - last_ok > 0.75 * lease_s:
                log.warning("job %s: lease unrenewed for %.0f s; stopping the run", self.job_id, 0.75 * lease_s)
                return
