"""Cursor paging for List* calls: the token is the last key of the previous page, opaque to clients."""

from __future__ import annotations

import base64
import binascii

from ragtune_common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def decode_page(page_size: int, page_token: str, field: str = "page") -> tuple[str, int]:
    """(key to continue after, page size) from a request's paging fields."""
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        raise InvalidArgument(f"must be between 0 and {MAX_PAGE_SIZE}", field=f"{field}.page_size")
    after = ""
    if page_token:
        try:
            after = base64.b64decode(page_token.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
        except (binascii.Error, UnicodeError, ValueError):
            raise InvalidArgument("is not a token from a previous page", field=f"{field}.page_token") from None
        if "\x00" in after:  # no key holds one (PostgreSQL text cannot): a forged token
            raise InvalidArgument("is not a token from a previous page", field=f"{field}.page_token")
    return after, page_size or DEFAULT_PAGE_SIZE


def next_page_token(keys: list[str], page_size: int) -> str:
    """The token for the page after ``keys``; empty when this page was the last."""
    if len(keys) < page_size or not keys:
        return ""
    return base64.urlsafe_b64encode(keys[-1].encode("utf-8")).decode("ascii")
