"""``/v1/admin``: creating a tenant, and tenants and their API keys as answered (a key itself only
once, in the answer that creates it: it is stored hashed)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ragtune_gateway.schemas.common import ResponseModel, Text, WireModel


class CreateTenant(WireModel):
    name: Text = Field(min_length=1, max_length=256)
    id: Text | None = Field(default=None, max_length=64, description="1-64 of [A-Za-z0-9_.-]; unset = generated")


# Responses


class TenantObject(ResponseModel):
    id: str
    object: Literal["tenant"] = "tenant"
    name: str
    created_at: int


class ApiKeyObject(ResponseModel):
    """A key as listed: its id and first characters, never the key."""

    id: str
    object: Literal["api_key"] = "api_key"
    tenant_id: str
    prefix: str = Field(description="The key's first characters, to recognise it")
    created_at: int
    revoked_at: int | None = None
    expires_at: int | None = Field(default=None, description="When the key stops being valid; null: never")


class CreatedApiKey(ApiKeyObject):
    key: str = Field(description="The key itself: shown in this answer only")


class RevokedApiKey(ApiKeyObject):
    deleted: Literal[True] = True


class UpdateTenantSettings(WireModel):
    """The settings to change; those not given stay as they are."""

    store_completions: bool | None = Field(
        default=None, description="store chat completions whose request does not say `store` (default false)"
    )
    completion_retention_days: int | None = Field(
        default=None, ge=1, le=36500, description="days a stored completion is kept (default 30); null = until deleted"
    )


class TenantSettingsObject(ResponseModel):
    object: Literal["tenant.settings"] = "tenant.settings"
    tenant_id: str
    store_completions: bool
    completion_retention_days: int | None
