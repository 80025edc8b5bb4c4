"""``/v1/files``: documents for vector stores and QA datasets for evaluations (kept by the gateway)
and fine-tune datasets (validated and kept by the trainer), all scoped to the caller's tenant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.schemas.common import ListPage, PathId
from ragtune_gateway.schemas.files import FileDeleted, FileObject, Purpose
from ragtune_gateway.services import files as service

router = APIRouter(prefix="/v1/files", tags=["files"])

DOWNLOAD: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes, as a download."}
}


async def check_content_length(request: Request, runtime: Runtime) -> None:
    """Refuse an oversized upload before reading it."""
    service.check_declared_size(runtime, request.headers.get("content-length", ""))


@router.post("", dependencies=[Depends(check_content_length)], response_model=FileObject)
async def create_file(
    runtime: Runtime,
    tenant: TenantId,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[Purpose, Form()],
) -> FileObject:
    return await service.create_file(runtime, tenant, file, purpose)


@router.get("", response_model=ListPage[FileObject])
async def list_files(
    runtime: Runtime,
    tenant: TenantId,
    purpose: Purpose | None = None,
    after: str = "",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
) -> ListPage[FileObject]:
    return await service.list_files(runtime, tenant, purpose, after, limit)


@router.get("/{file_id}", response_model=FileObject)
async def get_file(file_id: PathId, runtime: Runtime, tenant: TenantId) -> FileObject:
    return await service.get_file(runtime, tenant, file_id)


@router.get("/{file_id}/content", response_class=Response, responses=DOWNLOAD)
async def get_file_content(file_id: PathId, runtime: Runtime, tenant: TenantId) -> Response:
    download = await service.file_content(runtime, tenant, file_id)
    return Response(download.content, media_type=download.media_type, headers=download.headers)


@router.delete("/{file_id}", response_model=FileDeleted)
async def delete_file(file_id: PathId, runtime: Runtime, tenant: TenantId) -> FileDeleted:
    """Deletes the file; documents already added to vector stores stay there (as with OpenAI)."""
    return await service.delete_file(runtime, tenant, file_id)
