"""Runs queued jobs one at a time, each in a training process of its own.

A process per job (rather than a thread) because it is the only way to stop a job within seconds
wherever torch is (cancel = kill), it frees all of the model's memory when the job ends, and the
gRPC event loop never shares the GIL with the training loop. The job's state lives in PostgreSQL:
if the trainer stops mid-job (SIGTERM, or killed), the job stays ``running`` and the next start
resumes it from its last complete checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ragtune_common.channels import ChannelSecurity
from ragtune_trainer import store
from ragtune_trainer.jobspec import fine_tuned_model_name
from ragtune_trainer.publish import PublishError, load_adapter
from ragtune_trainer.settings import TrainerSettings
from ragtune_trainer.signals import JobSignals
from ragtune_trainer.store import JobRow

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(
        self, pool: AsyncConnectionPool, settings: TrainerSettings, base_model_path: Callable[[str], Path]
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.signals = JobSignals()
        self._base_model_path = base_model_path
        self._wake = asyncio.Event()
        self._cancel = asyncio.Event()
        self._current: str | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._cpu_before = 0.0  # CPU seconds of the current job's earlier runs (before a resume)
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
        """Stop the worker; a job in training stays ``running`` and is resumed at the next start."""
        self._closing = True
        self._wake.set()
        await self._stop_process()
        if self._task is not None:
            await self._task

    async def _update(self, job_id: str, changes: dict[str, Any], events: list[store.Event] | None = None) -> None:
        await store.update_job(self.pool, job_id, changes, events or [])
        await self.signals.notify()

    async def _loop(self) -> None:
        while not self._closing:
            try:
                if not await self._run_next():
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)
            except Exception:
                log.exception("job runner error; retrying")
                await asyncio.sleep(self.settings.poll_interval_s)

    async def _run_next(self) -> bool:
        """Run the first pending job no other trainer holds; False if there was none."""
        for job in await store.pending_jobs(self.pool):
            async with self.pool.connection() as lock:
                if not await store.try_lock_job(lock, job.id):
                    continue
                try:
                    current = await store.get_job(self.pool, None, job.id)  # fresh, now that we hold it
                    if current.status in store.ACTIVE:
                        await self._run(current)
                finally:
                    await store.unlock_job(lock, job.id)
            return True
        return False

    async def _resume_point(self, job: JobRow) -> str | None:
        for checkpoint in reversed(await store.list_checkpoints(self.pool, job.id)):
            if (Path(checkpoint.path) / "trainer_state.json").is_file():
                return checkpoint.path
        return None

    async def _run(self, job: JobRow) -> None:
        if job.cancel_requested:
            await self._finish_cancelled(job.id)
            return
        resume = await self._resume_point(job) if job.status != "queued" else None
        if job.status == "queued":
            if not await store.claim_job(self.pool, job.id):
                return
            await self.signals.notify()
        else:
            where = f"checkpoint at step {resume.rsplit('-', 1)[1]}" if resume else "the start (no checkpoint yet)"
            await self._update(
                job.id, {"resume_count": job.resume_count + 1}, [("message", {"message": f"resuming from {where}"})]
            )
        spec_path = await self._write_spec(job, resume)
        self._current, self._cancel, self._cpu_before = job.id, asyncio.Event(), job.cpu_seconds
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ragtune_trainer.train_process", str(spec_path), stdout=asyncio.subprocess.PIPE
        )
        try:
            outcome = await self._supervise(job)
        except BaseException:  # e.g. the database went away: never leave a training unsupervised
            await self._stop_process()
            raise
        finally:
            self._current = None
        if self._closing:
            return
        if outcome.get("cancelled"):
            await self._finish_cancelled(job.id)
        elif outcome.get("kind") == "done":
            await self._succeed(job, outcome["data"])
        else:
            data = outcome.get("data") or {
                "code": "training_crashed",
                "message": f"the training process exited with code {self._process.returncode}",
                "param": "",
            }
            await self._update(
                job.id,
                {"status": "failed", "finished_at": "now()", "error": data},
                [("status", {"status": "failed", "message": data["message"]})],
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
            "progress_interval_s": self.settings.progress_interval_s,
            "checkpoints_kept": self.settings.checkpoints_kept,
        }
        path = job_dir / "spec.json"
        path.write_text(json.dumps(spec, indent=2))
        return path

    async def _supervise(self, job: JobRow) -> dict[str, Any]:
        reader = asyncio.create_task(self._consume(job))
        cancel = asyncio.create_task(self._watch_cancel(job.id))
        done, _ = await asyncio.wait({reader, cancel}, return_when=asyncio.FIRST_COMPLETED)
        if cancel in done:
            await self._stop_process()
            await reader
            return {"cancelled": True}
        cancel.cancel()
        assert self._process is not None
        await self._process.wait()
        return reader.result()

    async def _watch_cancel(self, job_id: str) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cancel.wait(), self.settings.poll_interval_s)
                return
            if (await store.get_job(self.pool, None, job_id)).cancel_requested:
                return

    async def _stop_process(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), self.settings.cancel_grace_s)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def _consume(self, job: JobRow) -> dict[str, Any]:
        """Persist the training process's events until it closes its output; returns the last one."""
        assert self._process is not None and self._process.stdout is not None
        last: dict[str, Any] = {}
        async for raw in self._process.stdout:
            try:
                event = json.loads(raw)
                kind, data = event["kind"], event["data"]
            except (ValueError, KeyError, TypeError):
                log.warning("job %s: unreadable line from the training process: %r", job.id, raw[:200])
                continue
            if kind in ("done", "error"):
                last = event
            else:
                await self._record(job.id, kind, data)
        return last

    async def _record(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        if kind == "started":
            status = ("status", {"status": "running", "message": "training"})
            changes = {
                "status": "running",
                "total_steps": data["total_steps"],
                "trained_token_fraction": data["trained_token_fraction"],
            }
            await self._update(job_id, changes, [status, ("started", data)])
        elif kind == "progress":
            data = {**data, "cpu_seconds": self._cpu_before + data.get("cpu_seconds", 0.0)}  # over all runs
            changes = {k: data[k] for k in ("step", "total_steps", "train_loss", "trained_tokens", "cpu_seconds")}
            await self._update(job_id, changes, [("progress", data)])
        elif kind == "eval":
            await self._update(job_id, {"eval_loss": data["eval_loss"]}, [("eval", data)])
        elif kind == "checkpoint":
            await store.add_checkpoint(self.pool, job_id, data["step"], data["path"], data.get("kept", []))
            await self.signals.notify()
        else:
            await self._update(job_id, {}, [(kind, data)])

    async def _finish_cancelled(self, job_id: str) -> None:
        await self._update(
            job_id,
            {"status": "cancelled", "finished_at": "now()"},
            [("status", {"status": "cancelled", "message": "cancelled"})],
        )

    async def _succeed(self, job: JobRow, data: dict[str, Any]) -> None:
        name = fine_tuned_model_name(job.base_model, job.config.suffix, job.id)
        changes = {
            "status": "succeeded",
            "finished_at": "now()",
            "fine_tuned_model": name,
            "adapter_path": data["adapter_path"],
            "step": data["step"],
            "trained_tokens": data["trained_tokens"],
            "cpu_seconds": self._cpu_before + data.get("cpu_seconds", 0.0),
        }
        await self._update(job.id, changes, [("status", {"status": "succeeded", "message": f"trained {name}"})])
        with contextlib.suppress(PublishError):
            await self.publish(await store.get_job(self.pool, job.tenant, job.id))

    async def publish(self, job: JobRow) -> JobRow:
        """Load the job's adapter into the generator and record the outcome (raises PublishError)."""
        assert job.adapter_path and job.fine_tuned_model
        try:
            await load_adapter(
                self.settings.generator_address,
                job.fine_tuned_model,
                Path(job.adapter_path),
                job.tenant,
                self.settings.publish_timeout_s,
                ChannelSecurity.from_settings(self.settings),
            )
        except PublishError as exc:
            log.warning("job %s: publishing failed: %s", job.id, exc)
            event = {"published": False, "model": job.fine_tuned_model, "error": str(exc)}
            await self._update(job.id, {"publish_state": "failed", "publish_error": str(exc)}, [("publish", event)])
            raise
        event = {"published": True, "model": job.fine_tuned_model, "error": ""}
        await self._update(job.id, {"publish_state": "published", "publish_error": ""}, [("publish", event)])
        return await store.get_job(self.pool, job.tenant, job.id)
