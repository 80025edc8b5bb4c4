"""``/v1/vector_stores/{id}/file_batches``: files added to a store one by one, in the background,
each with its own outcome, so one file that cannot be read fails alone (``last_error``) while the
others are added.

Creating a batch checks the store and that every file is the tenant's (404 naming ``file_ids[i]``),
records the batch with all files ``in_progress``, and hands it to the :class:`FileBatchWorker` of
this gateway, which claims the files in order (a row claim in PostgreSQL, so two replicas never add
the same file at once) and records each outcome. A gateway that starts, or a retrieve of a batch
still in progress, sets a worker on what is left; a claim older than the lease (its gateway stopped)
is taken over. Cancel turns the files not yet started into ``cancelled``. A worker's writes are
conditional on its claim (see the repository): when its claim was taken over or its file finished
by someone else, its outcome is dropped and it leaves the batch to whoever holds it now."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from ragtune_gateway import ids
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.repositories import file_batches as repository
from ragtune_gateway.repositories.file_batches import BatchFileRow, BatchRow, FileClaim
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.common import ListPage
from ragtune_gateway.schemas.vector_stores import (
    BATCH_FILE_FIELDS,
    CreateFileBatch,
    FileCounts,
    LastError,
    VectorStoreFile,
    VectorStoreFileBatch,
)
from ragtune_gateway.services import files
from ragtune_gateway.services import vector_stores as stores
from ragtune_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

MIN_LEASE_S = 60.0
ERROR_CODES = ("server_error", "unsupported_file", "invalid_file")
BatchStatus = Literal["in_progress", "completed", "cancelled", "failed"]


def lease_s(settings: GatewaySettings) -> float:
    """How old a claim must be before another worker takes the file over (or a cancel ends it)."""
    return max(MIN_LEASE_S, 2 * settings.ingest_timeout_s)


class FileBatchWorker:
    """This gateway's background tasks adding batches' files (one task per batch)."""

    def __init__(self, runtime: GatewayRuntime) -> None:
        self.runtime = runtime
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.adding: dict[str, FileClaim] = {}  # batch -> the claim on the file its task is adding now

    @property
    def lease_s(self) -> float:
        return lease_s(self.runtime.settings)

    def start(self, batch_id: str) -> None:
        """Add the batch's remaining files, unless a task of this gateway already does."""
        if batch_id in self.tasks:
            return
        task = asyncio.create_task(self._run(batch_id), name=f"file-batch-{batch_id}")
        self.tasks[batch_id] = task
        task.add_done_callback(lambda _: self.tasks.pop(batch_id, None))

    async def resume(self) -> None:
        """At start-up: the batches that still have files to add."""
        for batch_id in await repository.unfinished_batch_ids(self.runtime.pool):
            self.start(batch_id)

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.adding:  # given back at once, so the next gateway to look goes on without waiting for the lease
            await repository.release_claims(self.runtime.pool, list(self.adding.values()))

    async def _run(self, batch_id: str) -> None:
        pool = self.runtime.pool
        try:
            context = await repository.batch_context(pool, batch_id)
            if context is None:
                return
            tenant, store_id, attributes = context
            while (claim := await repository.claim_next_file(pool, batch_id, self.lease_s)) is not None:
                self.adding[batch_id] = claim
                recorded = await self._add_file(tenant, store_id, attributes, claim)
                del self.adding[batch_id]
                if not recorded:  # taken over (or finished by a cancel): whoever holds it goes on
                    log.warning("file batch %s: file %s has another claimant; stopping", batch_id, claim.row.file_id)
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # the database went away: the files stay claimed until the lease lapses
            log.exception("file batch %s stopped", batch_id)

    async def _add_file(self, tenant: str, store_id: str, attributes: dict[str, Any] | None, claim: FileClaim) -> bool:
        """Add the claimed file and record its outcome; False if the claim was no longer this one's."""
        runtime, pool, row = self.runtime, self.runtime.pool, claim.row
        try:
            documents = await stores.documents_for(runtime, tenant, [row.file_id], attributes, "file_ids")
            await runtime.downstream.retriever.upsert_documents(
                tenant, store_id, documents, fields=BATCH_FILE_FIELDS, missing=stores.missing_store(store_id)
            )
            document = await runtime.downstream.retriever.get_document(tenant, store_id, row.file_id)
        except ApiError as error:
            code = "invalid_file" if error.status < 500 else "server_error"
            log.info("file batch %s: file %s failed: %s", row.batch_id, row.file_id, error.message)
            return await repository.finish_file(pool, claim, "failed", error=(code, error.message))
        except Exception as exc:
            log.exception("file batch %s: file %s failed", row.batch_id, row.file_id)
            message = f"The file could not be added ({type(exc).__name__})."
            return await repository.finish_file(pool, claim, "failed", error=("server_error", message))
        return await repository.finish_file(
            pool, claim, "completed", usage_bytes=document.char_count, chunk_count=document.chunk_count
        )


def batch_object(row: BatchRow) -> VectorStoreFileBatch:
    counts = FileCounts(
        in_progress=row.in_progress,
        completed=row.completed,
        failed=row.failed,
        cancelled=row.cancelled_files,
        total=row.total,
    )
    status: BatchStatus
    if row.in_progress:
        status = "in_progress"
    elif row.cancelled and row.cancelled_files:
        status = "cancelled"
    elif row.total and row.failed == row.total:
        status = "failed"
    else:
        status = "completed"
    return VectorStoreFileBatch(
        id=row.id,
        created_at=int(row.created_at.timestamp()),
        vector_store_id=row.vector_store_id,
        status=status,
        file_counts=counts,
    )


def batch_file_object(batch: BatchRow, row: BatchFileRow) -> VectorStoreFile:
    error = None
    if row.status == "failed":
        code = (
            row.error_code if row.error_code in ("server_error", "unsupported_file", "invalid_file") else "server_error"
        )
        error = LastError(code=code, message=row.error_message or "")  # type: ignore[arg-type]
    return VectorStoreFile(
        id=row.file_id,
        created_at=int(batch.created_at.timestamp()),
        vector_store_id=batch.vector_store_id,
        status=row.status,  # type: ignore[arg-type]
        usage_bytes=row.usage_bytes,
        last_error=error,
        attributes=batch.attributes,
        chunk_count=row.chunk_count,
        filename=row.filename or None,
    )


# Use cases.


async def create_batch(
    runtime: GatewayRuntime, worker: FileBatchWorker, tenant: str, store_id: str, body: CreateFileBatch
) -> VectorStoreFileBatch:
    await stores.get_collection(runtime, tenant, store_id)
    records = [await files.owned_file(runtime, tenant, f, f"file_ids[{i}]") for i, f in enumerate(body.file_ids)]
    batch_id = ids.new_id(ids.FILE_BATCH)
    await repository.insert_batch(
        runtime.pool, batch_id, tenant, store_id, [(r.id, r.filename) for r in records], body.attributes
    )
    worker.start(batch_id)
    return await get_batch(runtime, worker, tenant, store_id, batch_id)


async def owned_batch(runtime: GatewayRuntime, tenant: str, store_id: str, batch_id: str) -> BatchRow:
    row = await repository.get_batch(runtime.pool, tenant, store_id, batch_id)
    if row is None:
        raise not_found("file batch", batch_id)
    return row


async def get_batch(
    runtime: GatewayRuntime, worker: FileBatchWorker, tenant: str, store_id: str, batch_id: str
) -> VectorStoreFileBatch:
    row = await owned_batch(runtime, tenant, store_id, batch_id)
    if row.in_progress:
        worker.start(batch_id)  # no-op while this gateway adds them; else take over what was left
    return batch_object(row)


async def cancel_batch(runtime: GatewayRuntime, tenant: str, store_id: str, batch_id: str) -> VectorStoreFileBatch:
    if not await repository.cancel_batch(runtime.pool, tenant, store_id, batch_id, lease_s(runtime.settings)):
        raise not_found("file batch", batch_id)
    return batch_object(await owned_batch(runtime, tenant, store_id, batch_id))


async def list_batch_files(
    runtime: GatewayRuntime, tenant: str, store_id: str, batch_id: str, status: str | None, after: str, limit: int
) -> ListPage[VectorStoreFile]:
    batch = await owned_batch(runtime, tenant, store_id, batch_id)
    rows = await repository.list_files(runtime.pool, batch_id, status, after, limit + 1)
    data = [batch_file_object(batch, r) for r in rows[:limit]]
    return ListPage[VectorStoreFile].of(data, has_more=len(rows) > limit)
