"""Files of the tenants (``/v1/files``). Documents for vector stores and datasets for evaluations are
kept by the gateway in PostgreSQL (``gateway.file_chunks``), inserted with their row in one
transaction, so every gateway replica serves every file and a failed upload leaves nothing. Fine-tune
datasets are streamed to the trainer, which validates every line and keeps them under the same id;
the gateway keeps only their row."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import quote

from fastapi import UploadFile

from ragtune.trainer.v1 import trainer_pb2 as tpb
from ragtune_gateway import ids
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.repositories import files as repository
from ragtune_gateway.repositories.files import FileRecord
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.common import ListPage
from ragtune_gateway.schemas.files import UPLOAD_DATASET_FIELDS, FileDeleted, FileObject, Purpose, check_upload_name

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024  # read from an upload, and stored, at a time
MAX_REPORTED_LINES = 20
MULTIPART_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Download:
    """A file's bytes as a download: its media type and the headers that keep it one."""

    content: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


def file_object(record: FileRecord) -> FileObject:
    return FileObject(
        id=record.id,
        bytes=record.bytes,
        created_at=int(record.created_at.timestamp()),
        filename=record.filename,
        purpose=cast(Purpose, record.purpose),  # stored from a checked Purpose
    )


async def create_file(runtime: GatewayRuntime, tenant: str, upload: UploadFile, purpose: Purpose) -> FileObject:
    check_upload_name(upload)
    if purpose == "fine-tune":
        record = await upload_dataset(runtime, tenant, upload)
    else:
        record = await save_document(runtime, tenant, upload, purpose)
    return file_object(record)


async def list_files(
    runtime: GatewayRuntime, tenant: str, purpose: Purpose | None, after: str, limit: int
) -> ListPage[FileObject]:
    rows = await repository.list_files(runtime.pool, tenant, purpose, after, limit + 1)
    return ListPage[FileObject].of([file_object(r) for r in rows[:limit]], has_more=len(rows) > limit)


async def owned_file(runtime: GatewayRuntime, tenant: str, file_id: str, param: str | None = None) -> FileRecord:
    record = await repository.get_file(runtime.pool, tenant, file_id)
    if record is None:
        raise not_found("file", file_id, param)
    return record


async def get_file(runtime: GatewayRuntime, tenant: str, file_id: str) -> FileObject:
    return file_object(await owned_file(runtime, tenant, file_id))


async def file_content(runtime: GatewayRuntime, tenant: str, file_id: str) -> Download:
    """A document's bytes (a fine-tune dataset lives in the trainer and is not served)."""
    record = await owned_file(runtime, tenant, file_id)
    if record.purpose == "fine-tune":
        raise ApiError(400, "Files with purpose 'fine-tune' cannot be downloaded.", param="file_id")
    data = await read_bytes(runtime, record)
    # a download, never a page of this origin: an uploaded HTML or SVG file must not run as one
    headers = {"Content-Disposition": attachment(record.filename), "X-Content-Type-Options": "nosniff"}
    return Download(data, record.mime_type or "application/octet-stream", headers)


async def delete_file(runtime: GatewayRuntime, tenant: str, file_id: str) -> FileDeleted:
    """Deletes the file; documents already added to vector stores stay there (as with OpenAI)."""
    if not await repository.delete_file(runtime.pool, tenant, file_id):  # its bytes go with it
        raise not_found("file", file_id)
    return FileDeleted(id=file_id)


def check_declared_size(runtime: GatewayRuntime, content_length: str) -> None:
    """Refuse an oversized upload by its ``Content-Length``, before reading it (multipart overhead
    allowed for)."""
    if content_length.isdigit() and int(content_length) > runtime.settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES:
        raise too_large(runtime)


def attachment(filename: str) -> str:
    """``Content-Disposition`` of a download: an ASCII fallback name and the real one (RFC 6266/5987)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in filename)
    return f"attachment; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{quote(filename, safe='')}"


def guess_mime(filename: str) -> str:
    if filename.lower().endswith((".md", ".markdown")):
        return "text/markdown"
    return mimetypes.guess_type(filename)[0] or ""


async def save_document(runtime: GatewayRuntime, tenant: str, upload: UploadFile, purpose: str) -> FileRecord:
    """The upload's bytes and its row in one transaction. The server has spooled the whole body
    before the route runs (multipart), so reading it holds the transaction only for local reads."""
    limit = runtime.settings.max_upload_bytes
    if upload.size is not None and upload.size > limit:
        raise too_large(runtime)

    async def chunks() -> AsyncIterator[bytes]:
        size = 0
        while chunk := await upload.read(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise too_large(runtime)
            yield chunk
        if size == 0:
            raise ApiError(400, "The file is empty.", param="file", code="invalid_file")

    file_id = ids.new_id(ids.FILE)
    filename = upload.filename or file_id
    return await repository.insert_document(
        runtime.pool, file_id, tenant, filename, purpose, guess_mime(filename), chunks()
    )


def too_large(runtime: GatewayRuntime) -> ApiError:
    limit = runtime.settings.max_upload_bytes
    return ApiError(413, f"The file is over the limit of {limit} bytes.", param="file", code="file_too_large")


def _report_message(report: tpb.ValidationReport) -> str:
    lines = []
    for error in report.errors[:MAX_REPORTED_LINES]:
        where = f"line {error.line}" if error.line else "file"
        lines.append(f"{where}: {error.field + ': ' if error.field else ''}{error.reason}")
    more = len(report.errors) - MAX_REPORTED_LINES
    suffix = f"; and {more} more" if more > 0 else ""
    return "Invalid training file: " + "; ".join(lines) + suffix


async def upload_dataset(runtime: GatewayRuntime, tenant: str, upload: UploadFile) -> FileRecord:
    """Stream the JSONL to the trainer, which validates every line before storing anything."""
    size = 0
    failure: Exception | None = None

    async def parts() -> AsyncIterator[tpb.UploadDatasetRequest]:
        nonlocal size, failure
        try:
            yield tpb.UploadDatasetRequest(
                header=tpb.DatasetHeader(tenant=tenant, filename=upload.filename or "data.jsonl")
            )
            while chunk := await upload.read(CHUNK_BYTES):
                size += len(chunk)
                if size > runtime.settings.max_upload_bytes:
                    raise too_large(runtime)
                yield tpb.UploadDatasetRequest(chunk=chunk)
        except Exception as exc:
            failure = exc  # grpc only cancels the call on it: kept to be raised instead of that
            raise

    try:
        response = await runtime.downstream.trainer.upload_dataset(parts(), fields=UPLOAD_DATASET_FIELDS)
    except BaseException:  # a CancelledError or CANCELLED when reading the upload failed: that failure
        if failure is not None:
            raise failure from None
        raise
    if not response.report.valid or not response.HasField("dataset"):
        raise ApiError(400, _report_message(response.report), param="file", code="invalid_file")
    dataset = response.dataset
    return await repository.insert_file(
        runtime.pool, dataset.id, tenant, dataset.filename, "fine-tune", dataset.byte_count, "application/jsonl"
    )


async def read_bytes(runtime: GatewayRuntime, record: FileRecord) -> bytes:
    data = await repository.read_content(runtime.pool, record.id)
    if data is None:  # kept on a gateway's disk by an older version, and that disk is gone
        message = f"The content of file {record.id} is not available; upload it again."
        raise ApiError(409, message, param="file_id", code="file_content_missing")
    return data


def _plain_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


async def import_legacy_bytes(runtime: GatewayRuntime, folder: Path) -> int:
    """At start-up, after an upgrade: the documents an older gateway kept under ``folder`` (one file
    per id) go into the database, and the folder's files are removed; the number imported."""
    imported = 0
    for path in await asyncio.to_thread(_plain_files, folder):
        if not path.name.startswith("."):  # .<id>.part: an upload that never finished
            data = await asyncio.to_thread(path.read_bytes)
            imported += await repository.import_content(runtime.pool, path.name, data, CHUNK_BYTES)
        await asyncio.to_thread(path.unlink, True)
    if imported:
        log.info("imported the bytes of %d files from %s into the database", imported, folder)
    return imported
