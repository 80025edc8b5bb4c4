"""TrainerService servicer: converts protobuf <-> domain objects and delegates to the catalog
(datasets, job creation), the job runner (cancel, publish) and the store (reads)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

from ragtune.trainer.v1 import trainer_pb2 as pb
from ragtune.trainer.v1 import trainer_pb2_grpc
from ragtune_common.errors import FailedPrecondition, InvalidArgument, Unavailable
from ragtune_common.names import check_tenant
from ragtune_common.paging import decode_page, next_page_token
from ragtune_trainer import store
from ragtune_trainer.convert import FORMAT_IN, checkpoint_pb, dataset_pb, event_pb, job_pb, job_request, report_pb
from ragtune_trainer.publish import PublishError
from ragtune_trainer.raft import DEFAULT_SYSTEM_PROMPT, RaftItem
from ragtune_trainer.runtime import TrainerRuntime
from ragtune_trainer.store import FINAL, JobRow

MAX_RAFT_EXAMPLES = 100_000


def _raft_items(request: pb.BuildRaftDatasetRequest) -> list[RaftItem]:
    if not request.examples:
        raise InvalidArgument("at least one example is required", field="examples")
    if len(request.examples) > MAX_RAFT_EXAMPLES:
        raise InvalidArgument(f"at most {MAX_RAFT_EXAMPLES} examples per request", field="examples")
    items = []
    for i, ex in enumerate(request.examples):
        for name in ("question", "answer"):
            if not getattr(ex, name).strip():
                raise InvalidArgument("must not be empty", field=f"examples[{i}].{name}")
        if not ex.gold_passage.strip() and not ex.gold_document_id:
            raise InvalidArgument("give gold_passage or gold_document_id", field=f"examples[{i}].gold_passage")
        items.append(RaftItem(ex.question.strip(), ex.answer.strip(), ex.gold_passage.strip(), ex.gold_document_id))
    return items


def _finished(job: JobRow) -> bool:
    return job.status in FINAL and not (job.status == "succeeded" and job.publish_state == "pending")


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, runtime: TrainerRuntime) -> None:
        self._runtime = runtime
        self._settings = runtime.settings

    async def UploadDataset(
        self, request_iterator: AsyncIterator[pb.UploadDatasetRequest], context: Any
    ) -> pb.UploadDatasetResponse:
        header: pb.DatasetHeader | None = None
        parts: list[bytes] = []
        size = 0
        async for request in request_iterator:
            kind = request.WhichOneof("part")
            if header is None:
                if kind != "header":
                    raise InvalidArgument("the first message must carry the header", field="header")
                header = request.header
                continue
            if kind != "chunk":
                raise InvalidArgument("only the first message carries a header", field="header")
            size += len(request.chunk)
            if size > self._settings.max_dataset_bytes:
                raise InvalidArgument(f"the file is over {self._settings.max_dataset_bytes} bytes", field="chunk")
            parts.append(request.chunk)
        if header is None:
            raise InvalidArgument("the stream carried no header", field="header")
        if header.format not in (pb.DATASET_FORMAT_UNSPECIFIED, *FORMAT_IN):
            raise InvalidArgument(f"unknown format {header.format}", field="header.format")
        if len(header.filename) > 256 or "\x00" in header.filename:
            raise InvalidArgument("at most 256 characters, no NUL", field="header.filename")
        dataset, result = await self._runtime.catalog.add_dataset(
            check_tenant(header.tenant), header.filename, FORMAT_IN.get(header.format), b"".join(parts), "upload"
        )
        response = pb.UploadDatasetResponse(report=report_pb(result))
        if dataset is not None:
            response.dataset.CopyFrom(dataset_pb(dataset))
        return response

    async def GetDataset(self, request: pb.GetDatasetRequest, context: Any) -> pb.GetDatasetResponse:
        row = await store.get_dataset(self._runtime.pool, check_tenant(request.tenant), request.id, "id")
        return pb.GetDatasetResponse(dataset=dataset_pb(row))

    async def BuildRaftDataset(self, request: pb.BuildRaftDatasetRequest, context: Any) -> pb.BuildRaftDatasetResponse:
        tenant = check_tenant(request.tenant)
        if not request.collections:
            raise InvalidArgument("name at least one collection", field="collections")
        distractors = request.distractors or 3
        if not 1 <= distractors <= 20:
            raise InvalidArgument("must be between 1 and 20", field="distractors")
        fraction = request.no_gold_fraction if request.HasField("no_gold_fraction") else 0.2
        if not 0 <= fraction <= 1 or math.isnan(fraction):
            raise InvalidArgument("must be between 0 and 1", field="no_gold_fraction")
        if len(request.filename) > 256 or "\x00" in request.filename:
            raise InvalidArgument("at most 256 characters, no NUL", field="filename")
        items = _raft_items(request)
        data, no_gold = await self._runtime.raft.build(
            tenant,
            list(dict.fromkeys(request.collections)),
            items,
            distractors,
            fraction,
            request.seed,
            request.system_prompt or DEFAULT_SYSTEM_PROMPT,
        )
        dataset, result = await self._runtime.catalog.add_dataset(
            tenant, request.filename or "raft.jsonl", None, data, "raft"
        )
        response = pb.BuildRaftDatasetResponse(report=report_pb(result), no_gold_count=no_gold)
        if dataset is not None:
            response.dataset.CopyFrom(dataset_pb(dataset))
        return response

    async def CreateJob(self, request: pb.CreateJobRequest, context: Any) -> pb.CreateJobResponse:
        job = await self._runtime.catalog.create_job(
            check_tenant(request.tenant),
            request.model,
            request.training_file,
            request.validation_file,
            job_request(request),
        )
        return pb.CreateJobResponse(job=job_pb(job))

    async def GetJob(self, request: pb.GetJobRequest, context: Any) -> pb.GetJobResponse:
        return pb.GetJobResponse(
            job=job_pb(await store.get_job(self._runtime.pool, check_tenant(request.tenant), request.id))
        )

    async def ListJobs(self, request: pb.ListJobsRequest, context: Any) -> pb.ListJobsResponse:
        before, limit = decode_page(request.page.page_size, request.page.page_token)
        rows = await store.list_jobs(self._runtime.pool, check_tenant(request.tenant), before, limit)
        return pb.ListJobsResponse(
            jobs=[job_pb(r) for r in rows], next_page_token=next_page_token([r.id for r in rows], limit)
        )

    async def CancelJob(self, request: pb.CancelJobRequest, context: Any) -> pb.CancelJobResponse:
        """Returns once the job is cancelled (a running one within the grace period), or after a
        bounded wait with the cancellation still under way."""
        tenant, runner = check_tenant(request.tenant), self._runtime.runner
        job = await store.request_cancel(self._runtime.pool, tenant, request.id)
        runner.cancel(job.id)
        await runner.signals.notify()
        deadline = asyncio.get_running_loop().time() + self._settings.cancel_grace_s + 10
        while job.status not in FINAL and asyncio.get_running_loop().time() < deadline:
            await runner.signals.wait(0.5)
            job = await store.get_job(self._runtime.pool, tenant, job.id)
        return pb.CancelJobResponse(job=job_pb(job))

    async def WatchJob(self, request: pb.WatchJobRequest, context: Any) -> AsyncIterator[pb.JobEvent]:
        tenant, pool, signals = check_tenant(request.tenant), self._runtime.pool, self._runtime.runner.signals
        job = await store.get_job(pool, tenant, request.id)
        after = request.after_seq
        while True:
            rows = await store.events_after(pool, job.id, after)
            for row in rows:
                yield event_pb(row)
                after = row.seq
            if rows:
                continue
            if _finished(job):  # read before the events above: nothing can follow them
                return
            await signals.wait(self._settings.poll_interval_s)
            job = await store.get_job(pool, tenant, job.id)

    async def ListCheckpoints(self, request: pb.ListCheckpointsRequest, context: Any) -> pb.ListCheckpointsResponse:
        job = await store.get_job(self._runtime.pool, check_tenant(request.tenant), request.job_id)
        rows = await store.list_checkpoints(self._runtime.pool, job.id)
        return pb.ListCheckpointsResponse(checkpoints=[checkpoint_pb(r) for r in rows])

    async def PublishJob(self, request: pb.PublishJobRequest, context: Any) -> pb.PublishJobResponse:
        job = await store.get_job(self._runtime.pool, check_tenant(request.tenant), request.id)
        if job.status != "succeeded":
            raise FailedPrecondition(f"job {job.id} is {job.status}; only a succeeded job is published", field="id")
        try:
            job = await self._runtime.runner.publisher.publish(job)
        except PublishError as exc:
            raise (Unavailable if exc.retryable else FailedPrecondition)(str(exc)) from None
        return pb.PublishJobResponse(job=job_pb(job))
