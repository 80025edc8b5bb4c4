"""``/v1/evals``, the OpenAI Evals dialect: evals (an item schema and graders), runs and their
output items, per tenant. Everything a request asks for is checked before anything is stored — the
item schema is a JSON schema, every template names a variable it can see, every item of a run
satisfies the eval's schema — so a bad request fails with the field named and leaves nothing. Graders
that would run the caller's code (``python``) are refused, as are model graders (not run here yet).
Runs are carried out by the gateway's leased workers (:mod:`.eval_runs`)."""

from __future__ import annotations

import asyncio
from typing import Any

import jsonschema

from ragtune_eval import graders
from ragtune_eval.dataset import DatasetError, jsonl_rows
from ragtune_gateway import ids
from ragtune_gateway.errors import ApiError, not_found
from ragtune_gateway.repositories import evals as repository
from ragtune_gateway.repositories.evals import EvalRow, ItemRow, Order, RunRow, RunTotals
from ragtune_gateway.runtime import GatewayRuntime
from ragtune_gateway.schemas.common import ListPage
from ragtune_gateway.schemas.evals import (
    CreateEval,
    CreateRun,
    CriterionResult,
    EvalDeleted,
    EvalObject,
    EvalRunDeleted,
    EvalRunObject,
    FileContentSource,
    FileIdSource,
    GraderResult,
    ModelRunDataSource,
    ModelUsage,
    OutputItemObject,
    RefusedGrader,
    ResultCounts,
    RunError,
    StoredCompletionsSource,
    TemplateInput,
    TextSimilarityGrader,
    UpdateEval,
)
from ragtune_gateway.services import eval_sources, files, models
from ragtune_gateway.services.evaluation_worker import EvaluationWorker

MAX_RUN_ITEMS = 10_000
SAMPLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "choices": {"type": "array"},
        "output_text": {"type": "string"},
        "output_json": {},
    },
    "required": ["output_text"],
}
REFUSED_GRADERS = {
    "python": "python graders run code sent by the caller, which this server refuses to do;"
    " use string_check or text_similarity",
    "label_model": "model graders are not run by this server; use string_check or text_similarity",
    "score_model": "model graders are not run by this server; use string_check or text_similarity",
    "multi": "multi graders are not run by this server; give each grader on its own",
}


def _ts(value: Any) -> int:
    return int(value.timestamp())


# -- evals ------------------------------------------------------------------------------------------


def eval_object(row: EvalRow) -> EvalObject:
    config = row.data_source_config
    properties = {"item": config["item_schema"]}
    if config.get("include_sample_schema"):
        properties["sample"] = SAMPLE_SCHEMA
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return EvalObject(
        id=row.id,
        created_at=_ts(row.created_at),
        name=row.name,
        metadata=row.metadata,
        data_source_config=eval_sources.public_config(config, schema),
        testing_criteria=row.testing_criteria,
    )


def check_eval(body: CreateEval) -> dict[str, Any]:
    """The data source config to store, after checking it and every grader (400 naming the field)."""
    config = eval_sources.stored_config(body)
    names: set[str] = set()
    for i, grader in enumerate(body.testing_criteria):
        where = f"testing_criteria[{i}]"
        if isinstance(grader, RefusedGrader):
            raise ApiError(400, f"{where}: {REFUSED_GRADERS[grader.type]}.", param=f"{where}.type")
        if grader.name in names:
            raise ApiError(400, f"{where}: another grader is named {grader.name!r}.", param=f"{where}.name")
        names.add(grader.name)
        if isinstance(grader, TextSimilarityGrader) and grader.evaluation_metric not in graders.SIMILARITY_METRICS:
            supported = ", ".join(graders.SIMILARITY_METRICS)
            message = f"{where}: evaluation_metric '{grader.evaluation_metric}' is not computed here ({supported})."
            raise ApiError(400, message, param=f"{where}.evaluation_metric")
        for field in ("input", "reference"):
            try:
                graders.check_template(getattr(grader, field), sample_allowed=True)
            except graders.TemplateError as exc:
                raise ApiError(400, f"{where}.{field}: {exc}.", param=f"{where}.{field}") from None
    return config


async def create_eval(runtime: GatewayRuntime, tenant: str, body: CreateEval) -> EvalObject:
    config = check_eval(body)
    criteria = [grader.model_dump() for grader in body.testing_criteria]
    row = await repository.insert_eval(
        runtime.pool, ids.new_id(ids.EVAL), tenant, body.name or "", body.metadata, config, criteria
    )
    return eval_object(row)


async def owned_eval(runtime: GatewayRuntime, tenant: str, eval_id: str) -> EvalRow:
    row = await repository.get_eval(runtime.pool, tenant, eval_id)
    if row is None:
        raise not_found("eval", eval_id, "eval_id")
    return row


async def get_eval(runtime: GatewayRuntime, tenant: str, eval_id: str) -> EvalObject:
    return eval_object(await owned_eval(runtime, tenant, eval_id))


async def list_evals(
    runtime: GatewayRuntime, tenant: str, after: str, limit: int, order: Order
) -> ListPage[EvalObject]:
    rows = await repository.list_evals(runtime.pool, tenant, after, limit + 1, order)
    return ListPage[EvalObject].of([eval_object(r) for r in rows[:limit]], has_more=len(rows) > limit)


async def update_eval(runtime: GatewayRuntime, tenant: str, eval_id: str, body: UpdateEval) -> EvalObject:
    row = await repository.update_eval(runtime.pool, tenant, eval_id, body.name, body.metadata)
    if row is None:
        raise not_found("eval", eval_id, "eval_id")
    return eval_object(row)


async def delete_eval(runtime: GatewayRuntime, tenant: str, eval_id: str) -> EvalDeleted:
    if not await repository.delete_eval(runtime.pool, tenant, eval_id):
        raise not_found("eval", eval_id, "eval_id")
    return EvalDeleted(eval_id=eval_id)


# -- runs -------------------------------------------------------------------------------------------


def run_object(row: RunRow, totals: RunTotals) -> EvalRunObject:
    counts = totals.counts
    graded = counts.get("pass", 0) + counts.get("fail", 0) + counts.get("error", 0)
    return EvalRunObject(
        id=row.id,
        eval_id=row.eval_id,
        created_at=_ts(row.created_at),
        name=row.name,
        status=row.status,  # type: ignore[arg-type]  # the table CHECKs the same five
        model=row.model,
        data_source=row.data_source,
        metadata=row.metadata,
        error=RunError(**row.error) if row.error else None,
        result_counts=ResultCounts(
            total=graded, passed=counts.get("pass", 0), failed=counts.get("fail", 0), errored=counts.get("error", 0)
        ),
        per_testing_criteria_results=[
            CriterionResult(testing_criteria=n, passed=p, failed=f) for n, p, f in totals.criteria
        ],
        per_model_usage=[
            ModelUsage(model_name=m, invocation_count=c, prompt_tokens=p, completion_tokens=o, total_tokens=p + o)
            for m, c, p, o in totals.usage
        ],
        report_url=f"/v1/evals/{row.eval_id}/runs/{row.id}/output_items",
    )


async def _run_objects(runtime: GatewayRuntime, rows: list[RunRow]) -> list[EvalRunObject]:
    totals = await repository.totals(runtime.pool, [r.id for r in rows])
    return [run_object(r, totals[r.id]) for r in rows]


def _check_items(validator: Any, rows: list[tuple[dict[str, Any], Any]], params: list[str]) -> None:
    """Every item against the eval's schema (CPU work: run it in a thread)."""
    for (item, _), param in zip(rows, params, strict=True):
        _check_item(validator, item, param)


def _check_item(validator: Any, item: dict[str, Any], param: str) -> None:
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(item))
    except Exception as exc:  # a schema that cannot be applied (e.g. a $ref that does not resolve)
        raise ApiError(400, f"The eval's item_schema cannot be applied: {exc}"[:500], param=param) from None
    if error is not None:
        where = "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
        raise ApiError(400, f"{param}{where} does not match the eval's item_schema: {error.message}", param=param)


def read_rows(data: bytes, param: str) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """The (item, sample) rows of a JSONL file of ``{"item": {...}, "sample"?: {...}}`` lines."""
    rows = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"The file is not UTF-8 text (byte {exc.start}).", param=param) from None
    try:
        lines = list(jsonl_rows(text, param))
    except DatasetError as exc:  # names the parameter and the line
        raise ApiError(400, str(exc), param=param) from None
    for number, row in lines:
        if not isinstance(row, dict) or not isinstance(row.get("item"), dict):
            raise ApiError(400, f'Line {number}: each line must be {{"item": {{...}}}}.', param=param)
        sample = row.get("sample")
        if sample is not None and not isinstance(sample, dict):
            raise ApiError(400, f"Line {number}: 'sample' must be an object.", param=param)
        rows.append((row["item"], sample))
        if len(rows) > MAX_RUN_ITEMS:
            raise ApiError(400, f"A run takes at most {MAX_RUN_ITEMS} items.", param=param)
    if not rows:
        raise ApiError(400, "The file holds no items.", param=param)
    return rows


async def _source_rows(
    runtime: GatewayRuntime, tenant: str, body: CreateRun, config: dict[str, Any], validator: Any
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    source = body.data_source.source
    if isinstance(source, StoredCompletionsSource) and body.data_source.type != "jsonl":
        rows = await eval_sources.items(runtime, tenant, config, source)
        params = [f"data_source.source (stored completion {item['completion_id']})" for item, _ in rows]
    elif isinstance(source, FileContentSource):
        if len(source.content) > MAX_RUN_ITEMS:
            raise ApiError(400, f"A run takes at most {MAX_RUN_ITEMS} items.", param="data_source.source.content")
        rows = [(row.item, row.sample) for row in source.content]
        params = [f"data_source.source.content[{i}].item" for i in range(len(rows))]
    elif isinstance(source, FileIdSource):
        record = await files.owned_file(runtime, tenant, source.id, "data_source.source.id")
        data = await files.read_bytes(runtime, record)
        rows = await asyncio.to_thread(read_rows, data, "data_source.source.id")
        params = [f"data_source.source.id (line {i + 1})" for i in range(len(rows))]
    else:
        message = (
            f"data_source.source of type '{source.type}' is not supported here: use file_content or file_id"
            " (stored_completions: in a model run)."
        )
        raise ApiError(400, message, param="data_source.source.type")
    await asyncio.to_thread(_check_items, validator, rows, params)
    return rows


async def _check_model_source(runtime: GatewayRuntime, tenant: str, source: ModelRunDataSource) -> str:
    """The model a run samples (checked to exist for the tenant), after checking its messages and tools."""
    if not source.model:
        raise ApiError(400, f"A '{source.type}' run needs a model to sample.", param="data_source.model")
    await models.resolve_adapter(runtime, tenant, source.model, "data_source.model")
    messages = source.input_messages
    if messages is None:
        raise ApiError(400, "A run that samples a model needs input_messages.", param="data_source.input_messages")
    if isinstance(messages, TemplateInput):
        for i, message in enumerate(messages.template):
            try:
                graders.check_template(message.content, sample_allowed=False)
            except graders.TemplateError as exc:
                param = f"data_source.input_messages.template[{i}].content"
                raise ApiError(400, f"{param}: {exc}.", param=param) from None
    elif not messages.item_reference.startswith("item."):
        why = "item_reference must name a list of messages in the item, e.g. 'item.messages'."
        raise ApiError(400, why, param="data_source.input_messages.item_reference")
    tools = (source.sampling_params.tools if source.sampling_params else None) or []
    if tools and source.type != "responses":
        raise ApiError(400, "Tools are for 'responses' runs.", param="data_source.sampling_params.tools")
    for i, tool in enumerate(tools):
        if tool.get("type") != "file_search" or not isinstance(tool.get("vector_store_ids"), list):
            why = "Only the file_search tool, with vector_store_ids, is run here."
            raise ApiError(400, why, param=f"data_source.sampling_params.tools[{i}]")
    return source.model


async def create_run(
    runtime: GatewayRuntime, worker: EvaluationWorker, tenant: str, eval_id: str, body: CreateRun
) -> EvalRunObject:
    evaluation = await owned_eval(runtime, tenant, eval_id)
    validator = jsonschema.validators.validator_for(evaluation.data_source_config["item_schema"])(
        evaluation.data_source_config["item_schema"]
    )
    source = body.data_source
    model = await _check_model_source(runtime, tenant, source) if isinstance(source, ModelRunDataSource) else ""
    rows = await _source_rows(runtime, tenant, body, evaluation.data_source_config, validator)
    if not isinstance(source, ModelRunDataSource):
        for i, (_, sample) in enumerate(rows):
            if sample is None or not isinstance(sample.get("output_text", ""), str):
                message = "A 'jsonl' run grades the samples it is given: each row needs a sample with output_text."
                raise ApiError(400, message, param=f"data_source.source (item {i})")
    run_id = ids.new_id(ids.EVAL_RUN)
    name = body.name or f"{model or 'jsonl'}-{run_id[-6:]}"
    data_source = body.data_source.model_dump(exclude_none=True)  # as given (inline items: under the body limit)
    row = await repository.insert_run(
        runtime.pool,
        run_id,
        evaluation,
        name,
        body.metadata,
        model,
        data_source,
        [item for item, _ in rows],
        [graders.sample_namespace(str(s.get("output_text", ""))) | s if s is not None else None for _, s in rows],
    )
    worker.poke()
    return (await _run_objects(runtime, [row]))[0]


async def owned_run(runtime: GatewayRuntime, tenant: str, eval_id: str, run_id: str) -> RunRow:
    row = await repository.get_run(runtime.pool, tenant, eval_id, run_id)
    if row is None:
        raise not_found("eval run", run_id, "run_id")
    return row


async def get_run(runtime: GatewayRuntime, tenant: str, eval_id: str, run_id: str) -> EvalRunObject:
    return (await _run_objects(runtime, [await owned_run(runtime, tenant, eval_id, run_id)]))[0]


async def list_runs(
    runtime: GatewayRuntime, tenant: str, eval_id: str, status: str | None, after: str, limit: int, order: Order
) -> ListPage[EvalRunObject]:
    await owned_eval(runtime, tenant, eval_id)
    rows = await repository.list_runs(runtime.pool, tenant, eval_id, status, after, limit + 1, order)
    data = await _run_objects(runtime, rows[:limit])
    return ListPage[EvalRunObject].of(data, has_more=len(rows) > limit)


async def cancel_run(
    runtime: GatewayRuntime, worker: EvaluationWorker, tenant: str, eval_id: str, run_id: str
) -> EvalRunObject:
    cancelled = await repository.cancel_run(runtime.pool, tenant, eval_id, run_id)
    if cancelled is None:
        row = await owned_run(runtime, tenant, eval_id, run_id)
        raise ApiError(400, f"Run {run_id} is already {row.status}.", param="run_id")
    await worker.stop(run_id)
    return await get_run(runtime, tenant, eval_id, run_id)


async def delete_run(
    runtime: GatewayRuntime, worker: EvaluationWorker, tenant: str, eval_id: str, run_id: str
) -> EvalRunDeleted:
    if not await repository.delete_run(runtime.pool, tenant, eval_id, run_id):
        raise not_found("eval run", run_id, "run_id")
    await worker.stop(run_id)  # its worker is fenced out anyway; here it stops at once
    return EvalRunDeleted(run_id=run_id)


# -- output items -----------------------------------------------------------------------------------


def output_item_id(run_id: str, idx: int) -> str:
    return f"{ids.OUTPUT_ITEM}{run_id.removeprefix(ids.EVAL_RUN)}-{idx}"


def item_index(run_id: str, output_item_id: str) -> int | None:
    prefix = output_item_id_prefix(run_id)
    tail = output_item_id.removeprefix(prefix)
    return int(tail) if output_item_id.startswith(prefix) and tail.isdigit() and len(tail) < 10 else None


def output_item_id_prefix(run_id: str) -> str:
    return f"{ids.OUTPUT_ITEM}{run_id.removeprefix(ids.EVAL_RUN)}-"


def output_item(run: RunRow, row: ItemRow) -> OutputItemObject:
    sample = dict(row.sample) if row.sample else None
    if sample is not None:
        sample.pop("output_json", None)
    return OutputItemObject(
        id=output_item_id(run.id, row.idx),
        run_id=run.id,
        eval_id=run.eval_id,
        created_at=_ts(row.graded_at or run.created_at),
        status=row.status,  # type: ignore[arg-type]  # the table CHECKs the same four
        datasource_item_id=row.idx,
        datasource_item=row.item,
        results=[GraderResult(**r) for r in row.results or []],
        sample=sample,
    )


async def list_output_items(
    runtime: GatewayRuntime,
    tenant: str,
    eval_id: str,
    run_id: str,
    status: str | None,
    after: str,
    limit: int,
    order: Order,
) -> ListPage[OutputItemObject]:
    run = await owned_run(runtime, tenant, eval_id, run_id)
    after_idx = item_index(run.id, after) if after else None
    if after and after_idx is None:
        raise ApiError(400, f"{after!r} is not an output item of run {run_id}.", param="after")
    rows = await repository.list_items(runtime.pool, run.id, status, after_idx, limit + 1, order)
    data = [output_item(run, r) for r in rows[:limit]]
    return ListPage[OutputItemObject].of(data, has_more=len(rows) > limit)


async def get_output_item(
    runtime: GatewayRuntime, tenant: str, eval_id: str, run_id: str, item_id: str
) -> OutputItemObject:
    run = await owned_run(runtime, tenant, eval_id, run_id)
    idx = item_index(run.id, item_id)
    row = await repository.get_item(runtime.pool, run.id, idx) if idx is not None else None
    if row is None:
        raise not_found("output item", item_id, "output_item_id")
    return output_item(run, row)
