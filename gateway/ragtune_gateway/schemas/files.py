"""``POST /v1/files``: a multipart upload (``file`` and ``purpose``), checked before it is stored."""

from __future__ import annotations

from typing import Literal

from fastapi import UploadFile

from ragtune_gateway.errors import ApiError
from ragtune_gateway.schemas.common import check_text

Purpose = Literal["assistants", "user_data", "fine-tune", "evals"]  # evals: QA datasets for /v1/evaluations
MAX_FILENAME_CHARS = 255


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
