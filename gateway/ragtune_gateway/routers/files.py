"""``/v1/files``: documents for vector stores and QA datasets for evaluations (kept by the gateway)
and fine-tune datasets (validated and kept by the trainer), all scoped to the caller's tenant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from ragtune_gateway import files, store
from ragtune_gateway.auth import Runtime, TenantId
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.schemas.files import Purpose, check_upload_name

router = APIRouter(prefix="/v1/files", tags=["files"])


async def check_content_length(request: Request, runtime: Runtime) -> None:
    """Refuse an oversized upload before reading it (multipart overhead allowed for)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > runtime.settings.max_upload_bytes + 64 * 1024:
        raise files.too_large(runtime)


async def owned_file(runtime: Runtime, tenant: str, file_id: str, param: str | None = None) -> store.FileRecord:
    record = await store.get_file(runtime.pool, tenant, file_id)
    if record is None:
        raise not_found("file", file_id, param)
    return record


@router.post("", dependencies=[Depends(check_content_length)])
async def create_file(
    runtime: Runtime,
    tenant: TenantId,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[Purpose, Form()],
) -> dict[str, Any]:
    check_upload_name(file)
    if purpose == "fine-tune":
        record = await files.upload_dataset(runtime, tenant, file)
    else:
        record = await files.save_document(runtime, tenant, file, purpose)
    return files.file_object(record)


@router.get("")
async def list_files(
    runtime: Runtime,
    tenant: TenantId,
    purpose: Purpose | None = None,
    after: str = "",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
) -> dict[str, Any]:
    rows = await store.list_files(runtime.pool, tenant, purpose, after, limit + 1)
    data = [files.file_object(r) for r in rows[:limit]]
    return {
        "object": "list",
        "data": data,
        "has_more": len(rows) > limit,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


@router.get("/{file_id}")
async def get_file(file_id: str, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    return files.file_object(await owned_file(runtime, tenant, file_id))


@router.get("/{file_id}/content")
async def get_file_content(file_id: str, runtime: Runtime, tenant: TenantId) -> Response:
    record = await owned_file(runtime, tenant, file_id)
    if record.purpose == "fine-tune":
        raise ApiError(400, "Files with purpose 'fine-tune' cannot be downloaded.", param="file_id")
    data = await files.read_bytes(runtime, record)
    # a download, never a page of this origin: an uploaded HTML or SVG file must not run as one
    headers = {"Content-Disposition": files.attachment(record.filename), "X-Content-Type-Options": "nosniff"}
    return Response(data, media_type=record.mime_type or "application/octet-stream", headers=headers)


@router.delete("/{file_id}")
async def delete_file(file_id: str, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    """Deletes the file; documents already added to vector stores stay there (as with OpenAI)."""
    if not await store.delete_file(runtime.pool, tenant, file_id):
        raise not_found("file", file_id)
    files.remove_bytes(runtime, file_id)
    return {"id": file_id, "object": "file", "deleted": True}
