"""What the trainer needs at run time (database pool, tokenizer, job runner), opened before SERVING."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ragtune_common.channels import ChannelSecurity
from ragtune_common.database import apply_migrations, open_pool, resolve_database_url, wait_for_database
from ragtune_common.errors import Unavailable
from ragtune_common.models import resolve_base_model
from ragtune_trainer.catalog import Catalog
from ragtune_trainer.raft import RaftBuilder
from ragtune_trainer.runner import JobRunner
from ragtune_trainer.settings import TrainerSettings

log = logging.getLogger(__name__)

SCHEMA = "trainer"


class TrainerRuntime:
    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self.raft = RaftBuilder(
            settings.retriever_address, settings.retriever_timeout_s, ChannelSecurity.from_settings(settings)
        )
        self._pool: AsyncConnectionPool | None = None
        self._runner: JobRunner | None = None
        self._catalog: Catalog | None = None

    @property
    def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise Unavailable("the trainer is starting")
        return self._pool

    @property
    def runner(self) -> JobRunner:
        if self._runner is None:
            raise Unavailable("the trainer is starting")
        return self._runner

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            raise Unavailable("the trainer is starting")
        return self._catalog

    def base_model_path(self, name_or_path: str) -> Path:
        return resolve_base_model(name_or_path, self.settings.state_dir)

    async def start(self) -> None:
        """Connect (starting the embedded server if no DATABASE_URL), migrate, open the pool, load
        the default base model's tokenizer (converting the model once), and start the job runner,
        which first resumes a job a previous run left mid-way."""
        url = resolve_database_url(self.settings, self.settings.state_dir)
        await wait_for_database(url, timeout_s=60)
        await apply_migrations(url, SCHEMA, "ragtune_trainer.migrations")
        self._pool = await open_pool(url, self.settings)
        model_dir = await asyncio.to_thread(self.base_model_path, self.settings.base_model)
        # transformers is a heavy import (tens of seconds on a busy CPU): on a thread, so the event loop
        # keeps answering health checks (NOT_SERVING) meanwhile instead of leaving callers' channels
        # connecting until their deadline
        tokenizer = await asyncio.to_thread(_load_tokenizer, model_dir)
        self._runner = JobRunner(self._pool, self.settings, self.base_model_path)
        self._catalog = Catalog(self._pool, self.settings, tokenizer, self._runner, self.base_model_path)
        self._runner.start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.close()
        if self._pool is not None:
            await self._pool.close()


def _load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))
