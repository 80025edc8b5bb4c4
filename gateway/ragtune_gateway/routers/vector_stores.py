"""``/v1/vector_stores``: the caller's stores, their files, and search over them."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.schemas.common import Cursor, ListPage, PathId
from ragtune_gateway.schemas.vector_stores import (
    AddFile,
    CreateFileBatch,
    CreateStore,
    SearchBody,
    SearchPage,
    VectorStore,
    VectorStoreDeleted,
    VectorStoreFile,
    VectorStoreFileBatch,
    VectorStoreFileDeleted,
)
from ragtune_gateway.services import file_batches
from ragtune_gateway.services import vector_stores as service
from ragtune_gateway.services.file_batches import FileBatchWorker

router = APIRouter(prefix="/v1/vector_stores", tags=["vector stores"])

PageSize = Annotated[int, Query(ge=1, le=100)]
FileStatus = Literal["in_progress", "completed", "failed", "cancelled"]


def get_batch_worker(request: Request) -> FileBatchWorker:
    worker: FileBatchWorker = request.app.state.file_batches
    return worker


Worker = Annotated[FileBatchWorker, Depends(get_batch_worker)]


@router.post("", response_model=VectorStore)
async def create_store(body: CreateStore, runtime: Runtime, tenant: TenantId) -> VectorStore:
    return await service.create_store(runtime, tenant, body)


@router.get("", response_model=ListPage[VectorStore])
async def list_stores(
    runtime: Runtime, tenant: TenantId, after: Cursor = "", limit: PageSize = 20
) -> ListPage[VectorStore]:
    return await service.list_stores(runtime, tenant, after, limit)


@router.get("/{store_id}", response_model=VectorStore)
async def get_store(store_id: PathId, runtime: Runtime, tenant: TenantId) -> VectorStore:
    return await service.get_store(runtime, tenant, store_id)


@router.delete("/{store_id}", response_model=VectorStoreDeleted)
async def delete_store(store_id: PathId, runtime: Runtime, tenant: TenantId) -> VectorStoreDeleted:
    return await service.delete_store(runtime, tenant, store_id)


@router.post("/{store_id}/files", response_model=VectorStoreFile)
async def add_file(store_id: PathId, body: AddFile, runtime: Runtime, tenant: TenantId) -> VectorStoreFile:
    return await service.add_file(runtime, tenant, store_id, body)


@router.get("/{store_id}/files", response_model=ListPage[VectorStoreFile])
async def list_store_files(
    store_id: PathId, runtime: Runtime, tenant: TenantId, after: Cursor = "", limit: PageSize = 20
) -> ListPage[VectorStoreFile]:
    return await service.list_store_files(runtime, tenant, store_id, after, limit)


@router.get("/{store_id}/files/{file_id}", response_model=VectorStoreFile)
async def get_store_file(store_id: PathId, file_id: PathId, runtime: Runtime, tenant: TenantId) -> VectorStoreFile:
    return await service.get_store_file(runtime, tenant, store_id, file_id)


@router.delete("/{store_id}/files/{file_id}", response_model=VectorStoreFileDeleted)
async def delete_store_file(
    store_id: PathId, file_id: PathId, runtime: Runtime, tenant: TenantId
) -> VectorStoreFileDeleted:
    return await service.delete_store_file(runtime, tenant, store_id, file_id)


@router.post("/{store_id}/search", response_model=SearchPage)
async def search_store(store_id: PathId, body: SearchBody, runtime: Runtime, tenant: TenantId) -> SearchPage:
    return await service.search_store(runtime, tenant, store_id, body)


@router.post("/{store_id}/file_batches", response_model=VectorStoreFileBatch)
async def create_file_batch(
    store_id: PathId, body: CreateFileBatch, runtime: Runtime, worker: Worker, tenant: TenantId
) -> VectorStoreFileBatch:
    return await file_batches.create_batch(runtime, worker, tenant, store_id, body)


@router.get("/{store_id}/file_batches/{batch_id}", response_model=VectorStoreFileBatch)
async def get_file_batch(
    store_id: PathId, batch_id: PathId, runtime: Runtime, worker: Worker, tenant: TenantId
) -> VectorStoreFileBatch:
    return await file_batches.get_batch(runtime, worker, tenant, store_id, batch_id)


@router.post("/{store_id}/file_batches/{batch_id}/cancel", response_model=VectorStoreFileBatch)
async def cancel_file_batch(
    store_id: PathId, batch_id: PathId, runtime: Runtime, tenant: TenantId
) -> VectorStoreFileBatch:
    return await file_batches.cancel_batch(runtime, tenant, store_id, batch_id)


@router.get("/{store_id}/file_batches/{batch_id}/files", response_model=ListPage[VectorStoreFile])
async def list_file_batch_files(
    store_id: PathId,
    batch_id: PathId,
    runtime: Runtime,
    tenant: TenantId,
    after: Cursor = "",
    limit: PageSize = 20,
    filter: FileStatus | None = None,
) -> ListPage[VectorStoreFile]:
    return await file_batches.list_batch_files(runtime, tenant, store_id, batch_id, filter, after, limit)
