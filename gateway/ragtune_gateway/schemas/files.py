"""``/v1/files``: the multipart upload (``file`` and ``purpose``), checked before it is stored; the
answers, mirroring the official SDK's ``FileObject`` and ``FileDeleted``; and the table that names
a trainer field as the request's parameter in an error."""

from __future__ import annotations

from typing import Literal

from fastapi import UploadFile

from ragtune_gateway.errors import ApiError
from ragtune_gateway.schemas.common import Deleted, ResponseModel, check_text

Purpose = Literal["assistants", "user_data", "fine-tune", "evals"]  # evals: QA datasets for /v1/evaluations
MAX_FILENAME_CHARS = 255

# Trainer field paths of a dataset upload -> the request's parameter: all of it is the file.
UPLOAD_DATASET_FIELDS = {"chunk": "file", "header.filename": "file", "header": "file"}


def check_upload_name(upload: UploadFile) -> None:
    """The uploaded file's name is stored and shown: text without NUL, of a file system's length."""
    name = upload.filename or ""
    try:
        check_text(name)
    except ValueError as exc:
        raise ApiError(400, f"The file name {exc}.", param="file", code="invalid_value") from None
    if len(name) > MAX_FILENAME_CHARS:
        raise ApiError(
            400, f"The file name is over {MAX_FILENAME_CHARS} characters.", param="file", code="invalid_value"
        )


class FileObject(ResponseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: Purpose
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None
    expires_at: int | None = None


class FileDeleted(Deleted):
    object: Literal["file"] = "file"
