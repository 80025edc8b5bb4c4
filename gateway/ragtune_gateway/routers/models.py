"""``/v1/models``: the base model, the caller's own fine-tuned adapters and its aliases."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune_gateway import aliases
from ragtune_gateway.auth import Runtime, TenantId, metadata
from ragtune_gateway.errors import ApiError, rpc_errors
from ragtune_gateway.runtime import GatewayRuntime

router = APIRouter(prefix="/v1/models", tags=["models"])


def _model_not_found(model: str, param: str | None = "model") -> ApiError:
    return ApiError(
        404, f"The model '{model}' does not exist or you do not have access to it.", param=param, code="model_not_found"
    )


async def tenant_models(runtime: GatewayRuntime, tenant: str) -> list[gpb.Model]:
    """The base model and the tenant's adapters (learning the base model's name on the way)."""
    with rpc_errors("generator"):
        response = await runtime.downstream.generator.ListModels(
            gpb.ListModelsRequest(tenant=tenant), timeout=runtime.settings.rpc_timeout_s, metadata=metadata()
        )
    models = [m for m in response.models if not m.is_adapter or m.tenant == tenant]
    for m in models:
        if m.is_adapter:
            runtime.owned_models.add((tenant, m.id))
        else:
            runtime.base_model = m.id
    return models


async def resolve_adapter(runtime: GatewayRuntime, tenant: str, model: str, param: str = "model") -> str:
    """The generator adapter for ``model`` ("" = the base model); an alias gives its holder.
    Another tenant's adapter is answered exactly like an unknown model. Adapter names are
    immutable, so ownership once seen is remembered; the base model's name too."""
    if model and model == runtime.base_model:
        return ""
    if aliases.is_alias(model):
        alias = await aliases.get_alias(runtime.pool, tenant, model)
        if alias is None:
            raise _model_not_found(model, param)
        model = alias.model
    if (tenant, model) in runtime.owned_models:
        return model
    for m in await tenant_models(runtime, tenant):
        if m.id == model:
            return model if m.is_adapter else ""
    raise _model_not_found(model, param)


def model_object(m: gpb.Model) -> dict[str, Any]:
    return {
        "id": m.id,
        "object": "model",
        "created": m.loaded_at.seconds if m.HasField("loaded_at") else 0,
        "owned_by": m.tenant if m.is_adapter else "ragtune",
        "parent": m.base_model or None,
        "max_model_len": m.max_model_len or None,
    }


def alias_model_object(alias: aliases.Alias) -> dict[str, Any]:
    return {
        "id": alias.alias,
        "object": "model",
        "created": int(alias.updated_at.timestamp()),
        "owned_by": alias.tenant_id,
        "parent": None,
        "alias_for": alias.model,
    }


@router.get("")
async def list_models(runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    data = [model_object(m) for m in await tenant_models(runtime, tenant)]
    data += [alias_model_object(a) for a in await aliases.list_aliases(runtime.pool, tenant)]
    return {"object": "list", "data": data}


@router.get("/{model:path}")
async def get_model(model: str, runtime: Runtime, tenant: TenantId) -> dict[str, Any]:
    if aliases.is_alias(model) and (alias := await aliases.get_alias(runtime.pool, tenant, model)):
        return alias_model_object(alias)
    for m in await tenant_models(runtime, tenant):
        if m.id == model:
            return model_object(m)
    raise _model_not_found(model, param=None)
