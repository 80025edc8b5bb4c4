"""The trainer, as the gateway uses it: dataset uploads (validated line by line), fine-tuning jobs,
their events and checkpoints, and publication of finished adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ragtune.trainer.v1 import trainer_pb2 as tpb
from ragtune.trainer.v1 import trainer_pb2_grpc
from ragtune_gateway.downstream.base import EventStream, ServiceClient, request_metadata
from ragtune_gateway.downstream.errors import Fields
from ragtune_gateway.errors import ApiError

SERVICE = tpb.DESCRIPTOR.services_by_name["TrainerService"].full_name
IDEMPOTENT = ("GetDataset", "GetJob", "ListJobs", "WatchJob", "ListCheckpoints")
CANCEL_GRACE_S = 30  # a cancel waits for the training process to stop
PUBLISH_GRACE_S = 60  # a publish waits for the generators (the trainer's publish_timeout_s, by default)


class TrainerClient(ServiceClient):
    service = "trainer"

    def __init__(self, stub: trainer_pb2_grpc.TrainerServiceStub, timeout_s: float, ingest_timeout_s: float) -> None:
        super().__init__(timeout_s)
        self._stub = stub
        self.ingest_timeout_s = ingest_timeout_s

    async def upload_dataset(
        self, parts: AsyncIterator[tpb.UploadDatasetRequest], *, fields: Fields | None = None
    ) -> tpb.UploadDatasetResponse:
        """Streams the header and the chunks; the trainer validates every line before storing any."""
        return await self._unary(self._stub.UploadDataset, parts, timeout_s=self.ingest_timeout_s, fields=fields)

    async def create_job(self, request: tpb.CreateJobRequest, *, fields: Fields | None = None) -> tpb.Job:
        return (await self._unary(self._stub.CreateJob, request, fields=fields)).job

    async def get_job(self, tenant: str, job_id: str, *, missing: ApiError | None = None) -> tpb.Job:
        request = tpb.GetJobRequest(tenant=tenant, id=job_id)
        return (await self._unary(self._stub.GetJob, request, missing=missing)).job

    async def list_jobs(
        self, tenant: str, page_size: int, page_token: str = "", *, fields: Fields | None = None
    ) -> tpb.ListJobsResponse:
        """Newest first."""
        request = tpb.ListJobsRequest(tenant=tenant)
        request.page.page_size, request.page.page_token = page_size, page_token
        return await self._unary(self._stub.ListJobs, request, fields=fields)

    async def cancel_job(self, tenant: str, job_id: str, *, missing: ApiError | None = None) -> tpb.Job:
        request = tpb.CancelJobRequest(tenant=tenant, id=job_id)
        timeout_s = self.timeout_s + CANCEL_GRACE_S
        return (await self._unary(self._stub.CancelJob, request, timeout_s=timeout_s, missing=missing)).job

    async def publish_job(self, tenant: str, job_id: str, *, missing: ApiError | None = None) -> tpb.Job:
        request = tpb.PublishJobRequest(tenant=tenant, id=job_id)
        timeout_s = self.timeout_s + PUBLISH_GRACE_S
        return (await self._unary(self._stub.PublishJob, request, timeout_s=timeout_s, missing=missing)).job

    def watch_job(
        self, tenant: str, job_id: str, after_seq: int, *, timeout_s: float | None, missing: ApiError | None = None
    ) -> EventStream[tpb.JobEvent]:
        """The job's events after ``after_seq``; the stream ends when the job has finished (or at
        ``timeout_s``; None follows it for as long as it runs)."""
        request = tpb.WatchJobRequest(tenant=tenant, id=job_id, after_seq=after_seq)
        call = self._stub.WatchJob(request, timeout=timeout_s, metadata=request_metadata())
        return EventStream(call, self.service, missing=missing)

    async def list_checkpoints(
        self, tenant: str, job_id: str, *, missing: ApiError | None = None
    ) -> list[tpb.Checkpoint]:
        request = tpb.ListCheckpointsRequest(tenant=tenant, job_id=job_id)
        return list((await self._unary(self._stub.ListCheckpoints, request, missing=missing)).checkpoints)
