"""Datasets and jobs as the servicer sees them: validation that needs the database, the tokenizer
or the base model, then one write. Nothing is half-written: a dataset file is renamed into place
before its row exists, and removed again if the row cannot be written."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import replace
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ragtune_common.errors import InvalidArgument
from ragtune_trainer import store
from ragtune_trainer.datasets import (
    DatasetFormat,
    Example,
    LineInvalid,
    LineLimits,
    ValidationResult,
    validate_jsonl,
    write_dataset,
)
from ragtune_trainer.jobspec import JobRequest, new_id, resolve_config
from ragtune_trainer.masks import TemplateError, count_tokens
from ragtune_trainer.runner import JobRunner
from ragtune_trainer.settings import TrainerSettings
from ragtune_trainer.store import DatasetRow, JobRow

log = logging.getLogger(__name__)


class Catalog:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        settings: TrainerSettings,
        tokenizer: Any,
        runner: JobRunner,
        base_model_path: Any,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.tokenizer = tokenizer
        self.runner = runner
        self._base_model_path = base_model_path

    def _count_tokens(self, example: Example) -> tuple[int, int]:
        try:
            return count_tokens(self.tokenizer, example)
        except TemplateError as exc:  # this line's conversation, not the service, is at fault
            raise LineInvalid("messages", str(exc)) from None

    def validate(self, data: bytes, declared: DatasetFormat | None) -> ValidationResult:
        return validate_jsonl(
            data,
            declared,
            self._count_tokens,
            self.settings.max_seq_length_limit,
            self.settings.min_examples,
            LineLimits(self.settings.max_line_chars, self.settings.max_messages_per_line),
        )

    async def add_dataset(
        self, tenant: str, filename: str, declared: DatasetFormat | None, data: bytes, source: str
    ) -> tuple[DatasetRow | None, ValidationResult]:
        """Validate every line; store the dataset only if none is bad."""
        result = await asyncio.to_thread(self.validate, data, declared)
        if not result.valid or result.format is None:
            return None, result
        dataset_id = new_id("file")
        path = self.settings.artifacts / "datasets" / f"{dataset_id}.jsonl"
        size = await asyncio.to_thread(write_dataset, path, result.examples)
        row = DatasetRow(
            id=dataset_id,
            tenant=tenant,
            filename=filename or f"{dataset_id}.jsonl",
            format=result.format.value,
            source=source,
            path=str(path),
            example_count=len(result.examples),
            byte_count=size,
            token_count=result.token_count,
            max_example_tokens=result.max_example_tokens,
            created_at=None,  # type: ignore[arg-type]  # set by the database
        )
        try:
            return await store.insert_dataset(self.pool, row), result
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            raise

    async def create_job(
        self, tenant: str, model: str, training_file: str, validation_file: str, request: JobRequest
    ) -> JobRow:
        if not training_file:
            raise InvalidArgument("is required", field="training_file")
        training = await store.get_dataset(self.pool, tenant, training_file, "training_file")
        validation = (
            await store.get_dataset(self.pool, tenant, validation_file, "validation_file") if validation_file else None
        )
        base_model = model or self.settings.base_model
        try:
            await asyncio.to_thread(self._base_model_path, base_model)
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message, field="model") from None
        config = resolve_config(
            request,
            train_examples=training.example_count,
            has_validation_file=validation is not None,
            base_learning_rate=self.settings.base_learning_rate,
            default_max_seq_length=self.settings.default_max_seq_length,
            max_seq_length_limit=self.settings.max_seq_length_limit,
            default_checkpoint_interval=self.settings.default_checkpoint_interval_steps,
            max_lora_rank=self.settings.max_lora_rank,
        )
        s = self.settings  # the job records how it trains: a resume elsewhere trains the same way
        config = replace(config, packing=s.packing, row_tokens=s.row_tokens, precision=s.precision)
        if base_model == self.settings.base_model:  # the stored token counts are this tokenizer's
            for field, dataset in (("training_file", training), ("validation_file", validation)):
                if dataset and dataset.max_example_tokens > config.max_seq_length:
                    raise InvalidArgument(
                        f"{field} {dataset.id} has examples of up to {dataset.max_example_tokens} tokens,"
                        f" over {config.max_seq_length}: raise max_seq_length or shorten them",
                        field="max_seq_length",
                    )
        job = await store.insert_job(
            self.pool, new_id("ftjob"), tenant, base_model, training.id, validation.id if validation else None, config
        )
        log.info("job %s queued (%s on %s)", job.id, base_model, training.id)
        self.runner.wake()
        await self.runner.signals.notify()
        return job
