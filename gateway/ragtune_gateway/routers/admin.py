"""``/v1/admin``: tenants and their API keys, with the admin key only."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends

from ragtune_gateway import store
from ragtune_gateway.auth import Runtime, require_admin
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.schemas.admin import CreateTenant

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])

_TENANT_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")  # what every service accepts as a tenant


def _tenant_object(tenant: store.Tenant) -> dict[str, Any]:
    return {"id": tenant.id, "object": "tenant", "name": tenant.name, "created_at": int(tenant.created_at.timestamp())}


@router.post("/tenants")
async def create_tenant(body: CreateTenant, runtime: Runtime) -> dict[str, Any]:
    tenant_id = body.id or store.new_id("tn_", 8)
    if not _TENANT_ID.match(tenant_id):
        raise ApiError(400, "must be 1-64 characters of letters, digits, '_', '.', '-'", param="id")
    tenant = await store.create_tenant(runtime.pool, tenant_id, body.name)
    if tenant is None:
        raise ApiError(409, f"Tenant '{tenant_id}' already exists.", param="id", code="already_exists")
    return _tenant_object(tenant)


@router.get("/tenants")
async def list_tenants(runtime: Runtime) -> dict[str, Any]:
    return {"object": "list", "data": [_tenant_object(t) for t in await store.list_tenants(runtime.pool)]}


@router.post("/tenants/{tenant_id}/keys")
async def create_key(tenant_id: str, runtime: Runtime) -> dict[str, Any]:
    """The key is in this answer only: it is stored hashed."""
    if await store.get_tenant(runtime.pool, tenant_id) is None:
        raise not_found("tenant", tenant_id)
    record, key = await store.create_key(runtime.pool, tenant_id)
    return {**_key_object(record), "key": key}


def _key_object(record: store.ApiKey) -> dict[str, Any]:
    """A key as listed: its id and first characters, never the key (only its hash is stored)."""
    return {
        "id": record.id,
        "object": "api_key",
        "tenant_id": record.tenant_id,
        "prefix": record.prefix,
        "created_at": int(record.created_at.timestamp()),
        "revoked_at": int(record.revoked_at.timestamp()) if record.revoked_at else None,
    }


@router.get("/tenants/{tenant_id}/keys")
async def list_keys(tenant_id: str, runtime: Runtime) -> dict[str, Any]:
    """The tenant's keys, revoked ones too, oldest first."""
    if await store.get_tenant(runtime.pool, tenant_id) is None:
        raise not_found("tenant", tenant_id)
    return {"object": "list", "data": [_key_object(k) for k in await store.list_keys(runtime.pool, tenant_id)]}


@router.delete("/tenants/{tenant_id}/keys/{key_id}")
async def revoke_key(tenant_id: str, key_id: str, runtime: Runtime) -> dict[str, Any]:
    """Revokes the key on every gateway process at once (PostgreSQL NOTIFY drops it from their
    caches); revoking it again answers the same."""
    revoked = await store.revoke_key(runtime.pool, key_id, tenant_id)
    if revoked is None:
        raise not_found("API key", key_id, "key_id")
    record, key_hash = revoked
    runtime.keys.forget(key_hash)  # here at once; the other processes as the notification arrives
    return {**_key_object(record), "deleted": True}
