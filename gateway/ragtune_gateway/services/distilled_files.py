"""The training files distillations write, and the rule that keeps deletion real: deleting a stored
chat completion also takes it out of every distilled file no fine-tuning job has used yet. Its
training line goes (the file is rewritten under a new id, or deleted when nothing or too little is
left); a held-out or merged duplicate is only unlinked (nothing of it is in the file). A file a job
has trained on is that adapter's record and is left as it is. The file is rewritten before the
completion is deleted, so a trainer that cannot be reached leaves both as they were (503)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from fastapi import UploadFile

from ragtune_gateway.errors import ApiError
from ragtune_gateway.repositories import distillations as rows
from ragtune_gateway.repositories import files as file_rows
from ragtune_gateway.repositories.files import FileRecord
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.services import files

log = logging.getLogger(__name__)
JOBS_PAGE = 1000


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")


async def upload_lines(runtime: GatewayRuntime, tenant: str, filename: str, lines: list[dict[str, Any]]) -> FileRecord:
    """The lines as a fine-tune file, through the upload path every file takes (the trainer
    validates each line; a refusal is the same line-numbered 400 naming ``file``)."""
    data = jsonl(lines)
    upload = UploadFile(io.BytesIO(data), size=len(data), filename=filename)
    return await files.upload_dataset(runtime, tenant, upload)


async def used_by_job(runtime: GatewayRuntime, tenant: str, file_id: str) -> bool:
    """Whether any of the tenant's fine-tuning jobs names the file (training or validation)."""
    token = ""
    while True:
        response = await runtime.downstream.trainer.list_jobs(tenant, JOBS_PAGE, token)
        if any(file_id in (job.training_file, job.validation_file) for job in response.jobs):
            return True
        token = response.next_page_token
        if not token:
            return False


async def remove_completion(runtime: GatewayRuntime, tenant: str, completion_id: str) -> None:
    """Takes the completion out of the unused files of the distillations that took it (see the
    module's rule), then drops its links. Rewrites of one tenant's files take turns (an advisory
    lock), so two deletions at once never rewrite the same file from the same old lines."""
    links = await rows.taking(runtime.pool, tenant, completion_id)
    if not any(split == "train" and d.file_id for d, split in links):
        await rows.forget(runtime.pool, tenant, completion_id, {})
        return
    async with runtime.pool.connection() as lock:
        await lock.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"ragtune-distilled:{tenant}",))
        try:
            await _rewrite(runtime, tenant, completion_id)
        finally:
            await lock.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"ragtune-distilled:{tenant}",))


async def _rewrite(runtime: GatewayRuntime, tenant: str, completion_id: str) -> None:
    moves: dict[str, tuple[str | None, int]] = {}
    old_files: list[str] = []
    for distillation, split in await rows.taking(runtime.pool, tenant, completion_id):
        file_id = distillation.file_id
        if split != "train" or file_id is None:
            continue
        if await file_rows.get_file(runtime.pool, tenant, file_id) is None or await used_by_job(
            runtime, tenant, file_id
        ):
            continue
        lines = await rows.training_lines(runtime.pool, distillation.id, without=completion_id)
        new_file: str | None = None
        if lines:
            try:
                new_file = (await upload_lines(runtime, tenant, distillation.filename, lines)).id
            except ApiError as exc:
                if exc.status >= 500:
                    raise
                log.info("distillation %s: what is left is no training file (%s); deleted", distillation.id, exc)
        moves[distillation.id] = (new_file, len(lines) if new_file else 0)
        old_files.append(file_id)
    await rows.forget(runtime.pool, tenant, completion_id, moves)
    if old_files:
        await file_rows.delete_files(runtime.pool, tenant, old_files)


async def remove_expired(runtime: GatewayRuntime) -> bool:
    """Before the retention sweep: takes the expired completions out of unused distilled files;
    whether all of them are out (False: the trainer could not be reached; the sweep waits)."""
    for tenant, completion_id in await rows.expired_in_files(runtime.pool):
        try:
            await remove_completion(runtime, tenant, completion_id)
        except ApiError as exc:
            log.warning("retention: %s is still in a distilled file (%s); swept later", completion_id, exc.message)
            return False
    return True
