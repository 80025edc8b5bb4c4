"""Tenants and their API keys, for the admin: a key is shown once, when it is made (only its hash is
stored), and revoking one reaches every gateway process at once."""

from __future__ import annotations

import re

from ragtune_gateway import ids
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.repositories import tenants
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.admin import (
    ApiKeyObject,
    CreatedApiKey,
    CreateTenant,
    RevokedApiKey,
    TenantObject,
    TenantSettingsObject,
    UpdateTenantSettings,
)
from ragtune_gateway.schemas.common import ListPage

TENANT_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")  # what every service accepts as a tenant


def tenant_object(tenant: tenants.Tenant) -> TenantObject:
    return TenantObject(id=tenant.id, name=tenant.name, created_at=int(tenant.created_at.timestamp()))


def key_object(record: tenants.ApiKey) -> ApiKeyObject:
    """A key as listed: its id and first characters, never the key (only its hash is stored)."""
    return ApiKeyObject(
        id=record.id,
        tenant_id=record.tenant_id,
        prefix=record.prefix,
        created_at=int(record.created_at.timestamp()),
        revoked_at=int(record.revoked_at.timestamp()) if record.revoked_at else None,
        expires_at=int(record.expires_at.timestamp()) if record.expires_at else None,
    )


async def create_tenant(runtime: GatewayRuntime, body: CreateTenant) -> TenantObject:
    """400 for an id the services would refuse, 409 for one that is taken."""
    tenant_id = body.id or ids.new_id(ids.TENANT, 8)
    if not TENANT_ID.match(tenant_id):
        raise ApiError(400, "must be 1-64 characters of letters, digits, '_', '.', '-'", param="id")
    tenant = await tenants.create_tenant(runtime.pool, tenant_id, body.name)
    if tenant is None:
        raise ApiError(409, f"Tenant '{tenant_id}' already exists.", param="id", code="already_exists")
    return tenant_object(tenant)


async def list_tenants(runtime: GatewayRuntime) -> ListPage[TenantObject]:
    return ListPage.of([tenant_object(t) for t in await tenants.list_tenants(runtime.pool)])


async def _existing_tenant(runtime: GatewayRuntime, tenant_id: str) -> None:
    if await tenants.get_tenant(runtime.pool, tenant_id) is None:
        raise not_found("tenant", tenant_id)


async def create_key(runtime: GatewayRuntime, tenant_id: str) -> CreatedApiKey:
    """The key is in this answer only: it is stored hashed."""
    await _existing_tenant(runtime, tenant_id)
    record, key = await tenants.create_key(runtime.pool, tenant_id)
    return CreatedApiKey(**key_object(record).model_dump(), key=key)


async def list_keys(runtime: GatewayRuntime, tenant_id: str) -> ListPage[ApiKeyObject]:
    """The tenant's keys, revoked ones too, oldest first."""
    await _existing_tenant(runtime, tenant_id)
    return ListPage.of([key_object(k) for k in await tenants.list_keys(runtime.pool, tenant_id)])


async def revoke_key(runtime: GatewayRuntime, tenant_id: str, key_id: str) -> RevokedApiKey:
    """Revokes the key on every gateway process at once (PostgreSQL NOTIFY drops it from their
    caches); revoking it again answers the same."""
    revoked = await tenants.revoke_key(runtime.pool, key_id, tenant_id)
    if revoked is None:
        raise not_found("API key", key_id, "key_id")
    record, key_hash = revoked
    runtime.keys.forget(key_hash)  # here at once; the other processes as the notification arrives
    return RevokedApiKey(**key_object(record).model_dump())


def settings_object(settings: tenants.TenantSettings) -> TenantSettingsObject:
    return TenantSettingsObject(
        tenant_id=settings.tenant_id,
        store_completions=settings.store_completions,
        completion_retention_days=settings.completion_retention_days,
    )


async def get_settings(runtime: GatewayRuntime, tenant_id: str) -> TenantSettingsObject:
    settings = await tenants.get_settings(runtime.pool, tenant_id)
    if settings is None:
        raise not_found("tenant", tenant_id, "tenant_id")
    return settings_object(settings)


async def update_settings(runtime: GatewayRuntime, tenant_id: str, body: UpdateTenantSettings) -> TenantSettingsObject:
    """Sets what the body gives; ``store_completions: null`` is refused, ``completion_retention_days:
    null`` keeps stored completions until they are deleted."""
    changes = body.model_dump(include=body.model_fields_set)
    if "store_completions" in changes and changes["store_completions"] is None:
        raise ApiError(400, "store_completions must be true or false.", param="store_completions")
    settings = await tenants.update_settings(runtime.pool, tenant_id, changes)
    if settings is None:
        raise not_found("tenant", tenant_id, "tenant_id")
    return settings_object(settings)
