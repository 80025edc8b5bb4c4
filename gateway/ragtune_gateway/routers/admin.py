"""``/v1/admin``: tenants and their API keys, with the admin key only."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ragtune_gateway import store
from ragtune_gateway.auth import Runtime, require_admin
from ragtune_gateway.errors import ApiError, not_found

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])

_TENANT_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")  # what every service accepts as a tenant


class CreateTenant(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    id: str | None = Field(default=None, description="1-64 of [A-Za-z0-9_.-]; unset = generated")


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
    return {
        "id": record.id,
        "object": "api_key",
        "tenant_id": tenant_id,
        "key": key,
        "created_at": int(record.created_at.timestamp()),
    }
