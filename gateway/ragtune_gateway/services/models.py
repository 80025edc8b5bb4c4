"""The model catalogue of a tenant: the base model, its own fine-tuned adapters, its aliases and the
retriever's embedding models;
and the one check that a model name a request gives is the tenant's to use
(:func:`resolve_adapter`), which chat completions, promotions and evaluations share."""

from __future__ import annotations

import logging

from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune_gateway.errors import ApiError
from ragtune_gateway.repositories import aliases as alias_rows
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.aliases import is_alias
from ragtune_gateway.schemas.models import AliasModel, AnyModel, EmbeddingModel, Model, ModelList

log = logging.getLogger(__name__)

BASE_MODEL_OWNER = "ragtune"


def model_not_found(model: str, param: str | None = "model") -> ApiError:
    """The one answer for an unknown model and for another tenant's adapter or alias."""
    return ApiError(
        404, f"The model '{model}' does not exist or you do not have access to it.", param=param, code="model_not_found"
    )


def model_from_proto(m: gpb.Model) -> Model:
    return Model(
        id=m.id,
        created=m.loaded_at.seconds if m.HasField("loaded_at") else 0,
        owned_by=m.tenant if m.is_adapter else BASE_MODEL_OWNER,
        parent=m.base_model or None,
        max_model_len=m.max_model_len or None,
    )


def alias_model(row: alias_rows.Alias) -> AliasModel:
    return AliasModel(
        id=row.alias, created=int(row.updated_at.timestamp()), owned_by=row.tenant_id, alias_for=row.model
    )


async def tenant_models(runtime: GatewayRuntime, tenant: str) -> list[gpb.Model]:
    """The base model and the tenant's adapters, remembering on the way which adapters the tenant
    owns (adapter names are immutable) and the base model's name."""
    models = await runtime.downstream.generator.list_models(tenant)
    for m in models:
        if m.is_adapter:
            runtime.owned_models.add((tenant, m.id))
        else:
            runtime.base_model = m.id
    return models


async def resolve_adapter(runtime: GatewayRuntime, tenant: str, model: str, param: str = "model") -> str:
    """The generator adapter for ``model`` ("" = the base model); an alias gives its holder.
    Another tenant's adapter or alias is answered exactly like an unknown model (404 naming
    ``param``)."""
    if model and model == runtime.base_model:
        return ""
    if is_alias(model):
        alias = await alias_rows.get_alias(runtime.pool, tenant, model)
        if alias is None:
            raise model_not_found(model, param)
        model = alias.model
    if (tenant, model) in runtime.owned_models:
        return model
    for m in await tenant_models(runtime, tenant):
        if m.id == model:
            return model if m.is_adapter else ""
    raise model_not_found(model, param)


async def embedding_models(runtime: GatewayRuntime) -> list[EmbeddingModel]:
    """The retriever's embedding models; none while it cannot say (down, or a version without
    ListEmbeddingModels), so that the chat models are still listed."""
    try:
        found = await runtime.downstream.retriever.list_embedding_models()
    except ApiError as exc:
        log.warning("embedding models not listed: the retriever answered %s", exc.message)
        return []
    return [EmbeddingModel(id=m.name, default_variant=m.default_variant, is_default=m.is_default) for m in found]


async def list_models(runtime: GatewayRuntime, tenant: str) -> ModelList:
    """Served models first (the base model, then the tenant's adapters), then its aliases by name,
    then the embedding models (the default first)."""
    data: list[AnyModel] = [model_from_proto(m) for m in await tenant_models(runtime, tenant)]
    data += [alias_model(a) for a in await alias_rows.list_aliases(runtime.pool, tenant)]
    data += await embedding_models(runtime)
    return ModelList.of(data)


async def get_model(runtime: GatewayRuntime, tenant: str, model: str) -> AnyModel:
    if is_alias(model) and (alias := await alias_rows.get_alias(runtime.pool, tenant, model)):
        return alias_model(alias)
    for m in await tenant_models(runtime, tenant):
        if m.id == model:
            return model_from_proto(m)
    for embedding in await embedding_models(runtime):
        if embedding.id == model:
            return embedding
    raise model_not_found(model, param=None)
