"""Names every service validates the same way: tenants and resource names."""

from __future__ import annotations

import re

from ragtune_common.errors import InvalidArgument

DEFAULT_TENANT = "default"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_RULE = "must be 1-64 characters of letters, digits, '_', '.', '-'"


def check_name(value: str, field: str) -> str:
    if not _NAME.match(value):
        raise InvalidArgument(_RULE, field=field)
    return value


def check_tenant(value: str) -> str:
    """A request's tenant; empty means the default tenant."""
    return check_name(value, "tenant") if value else DEFAULT_TENANT
