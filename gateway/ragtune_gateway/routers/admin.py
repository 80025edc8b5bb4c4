"""``/v1/admin``: tenants and their API keys, with the admin key only
(:mod:`ragtune_gateway.services.admin`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ragtune_gateway.auth import Runtime, require_admin
from ragtune_gateway.schemas.admin import (
    ApiKeyObject,
    CreatedApiKey,
    CreateTenant,
    RevokedApiKey,
    TenantObject,
    TenantSettingsObject,
    UpdateTenantSettings,
)
from ragtune_gateway.schemas.common import ListPage, PathId
from ragtune_gateway.services import admin as service

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post("/tenants", response_model=TenantObject)
async def create_tenant(body: CreateTenant, runtime: Runtime) -> TenantObject:
    return await service.create_tenant(runtime, body)


@router.get("/tenants", response_model=ListPage[TenantObject])
async def list_tenants(runtime: Runtime) -> ListPage[TenantObject]:
    return await service.list_tenants(runtime)


@router.post("/tenants/{tenant_id}/keys", response_model=CreatedApiKey)
async def create_key(tenant_id: PathId, runtime: Runtime) -> CreatedApiKey:
    """The key is in this answer only: it is stored hashed."""
    return await service.create_key(runtime, tenant_id)


@router.get("/tenants/{tenant_id}/keys", response_model=ListPage[ApiKeyObject])
async def list_keys(tenant_id: PathId, runtime: Runtime) -> ListPage[ApiKeyObject]:
    """The tenant's keys, revoked ones too, oldest first."""
    return await service.list_keys(runtime, tenant_id)


@router.delete("/tenants/{tenant_id}/keys/{key_id}", response_model=RevokedApiKey)
async def revoke_key(tenant_id: PathId, key_id: PathId, runtime: Runtime) -> RevokedApiKey:
    """Revokes the key on every gateway process at once; revoking it again answers the same."""
    return await service.revoke_key(runtime, tenant_id, key_id)


@router.get("/tenants/{tenant_id}/settings", response_model=TenantSettingsObject)
async def get_settings(tenant_id: PathId, runtime: Runtime) -> TenantSettingsObject:
    """Whether the tenant stores chat completions by default, and how long it keeps them."""
    return await service.get_settings(runtime, tenant_id)


@router.post("/tenants/{tenant_id}/settings", response_model=TenantSettingsObject)
async def update_settings(tenant_id: PathId, body: UpdateTenantSettings, runtime: Runtime) -> TenantSettingsObject:
    """Changes the settings the body gives (``store_completions``, ``completion_retention_days``)."""
    return await service.update_settings(runtime, tenant_id, body)
