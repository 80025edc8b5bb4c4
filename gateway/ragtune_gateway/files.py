"""File storage: bytes of vector-store documents under ``<state_dir>/gateway/files/<id>``, written
whole before their row is inserted; fine-tune files streamed to the trainer's UploadDataset."""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import UploadFile

from ragtune.trainer.v1 import trainer_pb2 as tpb
from ragtune_gateway import store
from ragtune_gateway.auth import metadata
from ragtune_gateway.errors import ApiError, best_effort, rpc_errors
from ragtune_gateway.runtime import GatewayRuntime

CHUNK_BYTES = 1024 * 1024
MAX_REPORTED_LINES = 20


def file_object(record: store.FileRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "object": "file",
        "bytes": record.bytes,
        "created_at": int(record.created_at.timestamp()),
        "filename": record.filename,
        "purpose": record.purpose,
        "status": "processed",
        "status_details": None,
    }


def file_path(runtime: GatewayRuntime, file_id: str) -> Path:
    return runtime.settings.files_dir / file_id


def attachment(filename: str) -> str:
    """``Content-Disposition`` of a download: an ASCII fallback name and the real one (RFC 6266/5987)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in filename)
    return f"attachment; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{quote(filename, safe='')}"


def guess_mime(filename: str) -> str:
    if filename.lower().endswith((".md", ".markdown")):
        return "text/markdown"
    return mimetypes.guess_type(filename)[0] or ""


async def save_document(runtime: GatewayRuntime, tenant: str, upload: UploadFile, purpose: str) -> store.FileRecord:
    file_id = store.new_id("file-")
    target = file_path(runtime, file_id)
    staging = target.with_name(f".{file_id}.part")
    size = 0
    try:
        with staging.open("wb") as out:
            while chunk := await upload.read(CHUNK_BYTES):
                size += len(chunk)
                if size > runtime.settings.max_upload_bytes:
                    raise too_large(runtime)
                await asyncio.to_thread(out.write, chunk)
        if size == 0:
            raise ApiError(400, "The file is empty.", param="file", code="invalid_file")
        os.replace(staging, target)
        filename = upload.filename or file_id
        try:
            return await store.insert_file(runtime.pool, file_id, tenant, filename, purpose, size, guess_mime(filename))
        except BaseException:
            with best_effort(f"remove the bytes of {file_id}"):
                target.unlink(missing_ok=True)
            raise
    finally:
        with best_effort(f"remove the staging file of {file_id}"):
            staging.unlink(missing_ok=True)


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


async def upload_dataset(runtime: GatewayRuntime, tenant: str, upload: UploadFile) -> store.FileRecord:
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
        with rpc_errors("trainer", params={"chunk": "file", "header.filename": "file", "header": "file"}):
            response = await runtime.downstream.trainer.UploadDataset(
                parts(), timeout=runtime.settings.ingest_timeout_s, metadata=metadata()
            )
    except BaseException:  # a CancelledError or CANCELLED when reading the upload failed: that failure
        if failure is not None:
            raise failure from None
        raise
    if not response.report.valid or not response.HasField("dataset"):
        raise ApiError(400, _report_message(response.report), param="file", code="invalid_file")
    dataset = response.dataset
    return await store.insert_file(
        runtime.pool, dataset.id, tenant, dataset.filename, "fine-tune", dataset.byte_count, "application/jsonl"
    )


async def read_bytes(runtime: GatewayRuntime, record: store.FileRecord) -> bytes:
    return await asyncio.to_thread(file_path(runtime, record.id).read_bytes)


def remove_bytes(runtime: GatewayRuntime, file_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        file_path(runtime, file_id).unlink()
