"""Publishing finished adapters: the generators' LoadAdapter makes an adapter servable on every
generator without a restart. A job's first publication is part of finishing it (``runner``); those
that failed are tried again when a replica starts, every ``republish_interval_s``, and on demand
(PublishJob), each job leased meanwhile so that replicas do not publish the same one at once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from ragtune_common.channels import ChannelSecurity
from ragtune_trainer import leases, store
from ragtune_trainer.publish import PublishError, load_adapter
from ragtune_trainer.settings import TrainerSettings
from ragtune_trainer.signals import JobSignals
from ragtune_trainer.store import JobRow

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, pool: AsyncConnectionPool, settings: TrainerSettings, signals: JobSignals) -> None:
        self.pool = pool
        self.settings = settings
        self.signals = signals
        self._security = ChannelSecurity.from_settings(settings)

    async def load(self, job: JobRow) -> PublishError | None:
        """Publish the job's adapter to the generators; the failure, if any."""
        assert job.adapter_path and job.fine_tuned_model
        try:
            await load_adapter(
                self.settings.generator_address,
                job.fine_tuned_model,
                Path(job.adapter_path),
                job.tenant,
                self.settings.publish_timeout_s,
                self._security,
            )
        except PublishError as exc:
            log.warning("job %s: publishing failed: %s", job.id, exc)
            return exc
        return None

    async def publish(self, job: JobRow, record_unchanged: bool = True) -> JobRow:
        """Publish a succeeded job's adapter again and record the outcome (raises PublishError).
        ``record_unchanged=False`` leaves a failure that repeats the recorded one unrecorded."""
        failure = await self.load(job)
        error = str(failure) if failure else ""
        state = "failed" if failure else "published"
        if failure is None or record_unchanged or (job.publish_state, job.publish_error) != (state, error):
            event = {"published": failure is None, "model": job.fine_tuned_model, "error": error}
            await store.update_job(
                self.pool, job.id, {"publish_state": state, "publish_error": error}, [("publish", event)]
            )
            await self.signals.notify()
        if failure is not None:
            raise failure
        return await store.get_job(self.pool, job.tenant, job.id)

    async def republish_unpublished(self, closing: Callable[[], bool]) -> int:
        """Publish every succeeded job whose publication failed (or, written by an older trainer,
        never happened); stops at the first retryable failure (the generators are down). Each job
        is leased while this replica publishes it. Returns how many were published."""
        published, after = 0, ""
        replica = self.settings.replica_id
        while not closing():
            claim = await leases.claim_unpublished_job(self.pool, replica, self.settings.lease_s, after)
            if claim is None:
                break
            after = claim.job.id
            try:
                await self.publish(claim.job, record_unchanged=False)
                published += 1
                log.info("job %s: adapter %s published again", claim.job.id, claim.job.fine_tuned_model)
            except PublishError as exc:
                if exc.retryable:
                    break
            finally:
                await leases.release_lease(self.pool, claim.job.id, replica)
        return published
