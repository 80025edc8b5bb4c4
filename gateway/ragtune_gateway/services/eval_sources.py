"""What an eval's items are, besides the items a run gives: the item schema each data source
config stands for (``custom``: the caller's JSON schema, checked; ``stored_completions``: the
tenant's stored chat completions), and the items of a run whose source is ``stored_completions``.

A stored completion becomes the item ``{"input": <the request's messages>, "reference": <its
correction, else the stored answer>, "completion_id", "model", "metadata"}``: a run samples the
candidate on ``item.input`` (``input_messages: {"type": "item_reference", "item_reference":
"item.input"}``) and a grader compares ``{{sample.output_text}}`` with ``{{item.reference}}``.
The eval's ``metadata`` and the run source's filters (``model``, ``metadata``, ``created_after``,
``created_before``, ``limit``, and ragtune's ``distillation_id``: only what that distillation held
out) must all hold; the items are the newest ``limit`` (default and at most 10,000), oldest first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jsonschema

from ragtune_gateway.errors import ApiError
from ragtune_gateway.repositories import stored_completions as stored
from ragtune_gateway.repositories.stored_completions import StoredFilter
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.evals import (
    CreateEval,
    CustomDataSourceConfig,
    LogsDataSourceConfig,
    StoredCompletionsSource,
)
from ragtune_gateway.services import distillations

MAX_ITEMS = 10_000
STORED_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "input": {"type": "array", "items": {"type": "object"}, "description": "the request's messages"},
        "reference": {"type": "string", "description": "the corrected answer, else the stored answer"},
        "completion_id": {"type": "string"},
        "model": {"type": "string"},
        "metadata": {"type": "object"},
    },
    "required": ["input", "reference"],
}


def _outside_refs(schema: Any) -> str | None:
    """The first ``$ref`` that leaves the schema (nothing is fetched: it would fail every item)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref", node.get("$dynamicRef"))
            if ref is not None and not (isinstance(ref, str) and ref.startswith("#")):
                return str(ref)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def stored_config(body: CreateEval) -> dict[str, Any]:
    """The eval's data source config as stored (its ``item_schema`` checked): 400 naming the field."""
    config = body.data_source_config
    if isinstance(config, LogsDataSourceConfig):
        message = "data_source_config of type 'logs' is not supported: use 'custom' or 'stored_completions'."
        raise ApiError(400, message, param="data_source_config.type")
    if not isinstance(config, CustomDataSourceConfig):
        return {**config.model_dump(), "item_schema": STORED_ITEM_SCHEMA, "include_sample_schema": True}
    try:
        jsonschema.validators.validator_for(config.item_schema).check_schema(config.item_schema)
    except jsonschema.SchemaError as exc:
        raise ApiError(400, f"Not a JSON schema: {exc.message}", param="data_source_config.item_schema") from None
    if outside := _outside_refs(config.item_schema):
        message = f"item_schema may only refer to itself ($ref '#...'), not to {outside!r}."
        raise ApiError(400, message, param="data_source_config.item_schema")
    return config.model_dump()


def public_config(config: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The config as the official client reads it back (``schema`` of the item and sample namespaces)."""
    if config.get("type") == "stored_completions":
        return {"type": "stored_completions", "schema": schema, "metadata": config.get("metadata") or {}}
    return {"type": "custom", "schema": schema}


def _when(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


async def items(
    runtime: GatewayRuntime, tenant: str, config: dict[str, Any], source: StoredCompletionsSource
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """The run's items from the tenant's stored completions; a filter matching none is a 400."""
    param = "data_source.source"
    if source.distillation_id:
        await distillations.owned(runtime, tenant, source.distillation_id, f"{param}.distillation_id")
    metadata = {**(config.get("metadata") or {}), **(source.metadata or {})}
    where = StoredFilter(
        model=source.model or "",
        metadata=metadata,
        created_after=_when(source.created_after),
        created_before=_when(source.created_before),
        holdout_of=source.distillation_id or "",
        limit=source.limit or MAX_ITEMS,
    )
    found = await stored.select(runtime.pool, tenant, where)
    if not found:
        raise ApiError(400, "The source matches no stored chat completion.", param=param, code="no_match")
    return [
        (
            {
                "input": distillations.prompt_of(row),
                "reference": distillations.reference_answer(row),
                "completion_id": row.id,
                "model": row.model,
                "metadata": row.metadata,
            },
            None,
        )
        for row in found
    ]
