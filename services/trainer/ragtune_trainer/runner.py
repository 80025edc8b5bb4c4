"""This replica's worker: takes jobs from the shared queue one at a time and trains each in a process
of its own.

A process per job (rather than a thread) because it is the only way to stop a job within seconds
wherever torch is (cancel = kill), it frees all of the model's memory when the job ends, and the
gRPC event loop never shares the GIL with the training loop. The job's state lives in PostgreSQL
and its checkpoints in the shared artifacts directory: when a replica stops mid-job (SIGTERM: it
gives the lease back at once; killed: the lease expires), the job stays ``running`` and the next
replica to look resumes it from its last checkpoint, saying so in the job's events.

A job ends ``succeeded`` only once publishing has been tried: the finished adapter is recorded
first (a replica that takes the job over then only publishes it), so a succeeded job is never left
with its publication pending (``publication`` retries those that failed).

Every status this worker writes is conditional (``store.TRANSITIONS``): a job that a request
cancelled, or that has finished, refuses the write (``JobFinished``) and the worker drops the job.
A cancel requested before the trained adapter is recorded wins over the training's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ragtune_trainer import leases, store
from ragtune_trainer.durable import until_written
from ragtune_trainer.jobspec import fine_tuned_model_name
from ragtune_trainer.metrics import QUEUE_DEPTH, RUNNING_JOBS
from ragtune_trainer.publication import Publisher
from ragtune_trainer.settings import TrainerSettings
from ragtune_trainer.signals import JobSignals
from ragtune_trainer.store import Event, JobFinished, JobRow, LeaseLost
from ragtune_trainer.supervisor import TrainingRun

log = logging.getLogger(__name__)

_RELEASED = {"lease_owner": None, "lease_expires_at": None}


class JobRunner:
    def __init__(
        self, pool: AsyncConnectionPool, settings: TrainerSettings, base_model_path: Callable[[str], Path]
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.replica = settings.replica_id
        self.signals = JobSignals()
        self.publisher = Publisher(pool, settings, self.signals)
        self._base_model_path = base_model_path
        self._wake = asyncio.Event()
        self._cancel = asyncio.Event()
        self._current: str | None = None
        self._training: TrainingRun | None = None
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="trainer-job-runner")

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, job_id: str) -> None:
        if self._current == job_id:
            self._cancel.set()

    async def close(self) -> None:
        """Stop the worker; a job in training stays ``running``, its lease given back for the next
        replica (or this one's next start) to resume it."""
        self._closing = True
        self._wake.set()
        if self._training is not None:
            await self._training.stop()
        if self._task is not None:
            try:  # a write retried while the database is away must not hold the shutdown up
                await asyncio.wait_for(asyncio.shield(self._task), self.settings.grace_period_s + 5)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def _update(self, job_id: str, changes: dict[str, Any], events: list[Event], owner: str | None) -> None:
        await until_written(partial(store.update_job, self.pool, job_id, changes, events, owner), f"job {job_id}")
        await self.signals.notify()

    async def _loop(self) -> None:
        republish_at = 0.0
        while not self._closing:
            try:
                if time.monotonic() >= republish_at:
                    republish_at = time.monotonic() + self.settings.republish_interval_s
                    await self.publisher.republish_unpublished(lambda: self._closing)
                QUEUE_DEPTH.set(await leases.queue_depth(self.pool))
                if not await self._take_next():
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)
            except Exception:
                log.exception("job runner error; retrying")
                await asyncio.sleep(self.settings.poll_interval_s)

    async def _take_next(self) -> bool:
        """Lease and run the next job; False if there was none."""
        claim = await leases.claim_next_job(self.pool, self.replica, self.settings.lease_s)
        if claim is None:
            return False
        job = claim.job
        RUNNING_JOBS.set(1)
        self._current, self._cancel = job.id, asyncio.Event()
        try:
            await self._run(job, claim.previous_owner)
        except JobFinished as exc:
            log.info("job %s: %s (cancelled or finished elsewhere); this replica stops", job.id, exc)
        except LeaseLost:
            log.warning("job %s: taken over by another replica; this one stops", job.id)
        finally:
            self._current, self._training = None, None
            RUNNING_JOBS.set(0)
            with contextlib.suppress(Exception):  # a no-op once final; else the next replica need not wait
                await leases.release_lease(self.pool, job.id, self.replica)
        return True

    async def _resume_point(self, job: JobRow) -> str | None:
        for checkpoint in reversed(await store.list_checkpoints(self.pool, job.id)):
            if (Path(checkpoint.path) / "trainer_state.json").is_file():
                return checkpoint.path
        return None

    def _who(self, previous: str | None) -> str:
        if previous and previous != self.replica:
            return f"replica {self.replica} took the job over from replica {previous} (its lease expired)"
        return f"replica {self.replica} took the job"

    async def _run(self, job: JobRow, previous: str | None) -> None:
        me = self.replica
        if job.cancel_requested:
            await self._finish(job.id, "cancelled", {}, "cancelled")
            return
        resume = None
        if job.status == "queued":
            if not await store.claim_job(self.pool, job.id, me):
                return
            await self._update(job.id, {}, [("message", {"message": self._who(previous)})], me)
        elif job.adapter_path:  # trained; the replica that trained it stopped before publishing
            note = f"{self._who(previous)}: training had finished, publishing"
            await self._update(job.id, {}, [("message", {"message": note})], me)
            await self._complete(job, None)
            return
        else:
            resume = await self._resume_point(job)
            where = f"checkpoint at step {resume.rsplit('-', 1)[1]}" if resume else "the start (no checkpoint yet)"
            note = f"{self._who(previous)}, resuming from {where}"
            await self._update(job.id, {"resume_count": job.resume_count + 1}, [("message", {"message": note})], me)
        spec_path = await self._write_spec(job, resume)
        self._training = TrainingRun(
            self.pool, self.settings, job.id, self._cancel, job.cpu_seconds, self.signals.notify
        )
        outcome = await self._training.run(spec_path)
        if self._closing or outcome.kind == "lease_lost":
            return
        if outcome.kind == "cancelled":
            await self._finish(job.id, "cancelled", {}, "cancelled")
        elif outcome.kind == "done":
            await self._complete(job, outcome.data)
        else:
            error = outcome.data or {
                "code": "training_crashed",
                "message": crash_message(outcome.returncode),
                "param": "",
            }
            await self._finish(job.id, "failed", {"error": error}, error["message"])

    async def _finish(self, job_id: str, status: str, changes: dict[str, Any], message: str) -> None:
        event = ("status", {"status": status, "message": message})
        await self._update(
            job_id, {**changes, "status": status, "finished_at": "now()", **_RELEASED}, [event], self.replica
        )

    async def _write_spec(self, job: JobRow, resume: str | None) -> Path:
        training = await store.get_dataset(self.pool, job.tenant, job.training_file, "training_file")
        validation = (
            await store.get_dataset(self.pool, job.tenant, job.validation_file, "validation_file")
            if job.validation_file
            else None
        )
        job_dir = self.settings.artifacts / "jobs" / job.id
        job_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "job_id": job.id,
            "job_dir": str(job_dir),
            "base_model_path": str(await asyncio.to_thread(self._base_model_path, job.base_model)),
            "train_path": training.path,
            "validation_path": validation.path if validation else None,
            "config": job.config.to_json(),
            "resume_from": resume,
            "device": self.settings.device,
            "torch_threads": self.settings.torch_threads,  # this replica's CPUs: not the job's to record
            "progress_interval_s": self.settings.progress_interval_s,
            "checkpoints_kept": self.settings.checkpoints_kept,
        }
        path = job_dir / "spec.json"
        path.write_text(json.dumps(spec, indent=2))
        return path

    async def _complete(self, job: JobRow, data: dict[str, Any] | None) -> None:
        """Record the finished adapter (while the job is still ``running``, unless a cancel was
        requested first: then it ends cancelled), publish it, then mark the job succeeded with the
        publication's outcome, in one write."""
        name = fine_tuned_model_name(job.base_model, job.config.suffix, job.id)
        if data is not None:
            trained = {
                "fine_tuned_model": name,
                "adapter_path": data["adapter_path"],
                "step": data["step"],
                "trained_tokens": data["trained_tokens"],
                "cpu_seconds": job.cpu_seconds + data.get("cpu_seconds", 0.0),
            }
            record = partial(store.record_trained, self.pool, job.id, trained, self.replica)
            if not await until_written(record, f"job {job.id}"):  # a cancel came first: it wins
                await self._finish(job.id, "cancelled", {}, "cancelled")
                return
            job = await until_written(partial(store.get_job, self.pool, None, job.id), f"job {job.id}")
        failure = await self.publisher.load(job)
        error = str(failure) if failure else ""
        result = {"publish_state": "failed" if failure else "published", "publish_error": error}
        events: list[Event] = [
            ("status", {"status": "succeeded", "message": f"trained {name}"}),
            ("publish", {"published": failure is None, "model": name, "error": error}),
        ]
        changes = {**result, "fine_tuned_model": name, "status": "succeeded", "finished_at": "now()", **_RELEASED}
        await self._update(job.id, changes, events, self.replica)


def crash_message(returncode: int | None) -> str:
    """What a user reads when the training process ended without a result: a signal by name, and
    for SIGKILL the usual cause (the kernel's out-of-memory killer) with what lowers the memory."""
    if returncode is None or returncode >= 0:
        return f"the training process exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    if -returncode == signal.SIGKILL:
        return (
            f"the training process was killed ({name}), most often by the kernel's out-of-memory killer:"
            " a smaller hyperparameters.batch_size (or shorter examples) needs less memory"
        )
    return f"the training process was killed ({name})"
