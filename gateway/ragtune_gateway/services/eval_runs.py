"""Eval runs as leased jobs (a :class:`~ragtune_gateway.services.evaluation_worker.JobKind`): the
worker that claims a run samples the run's model for each pending item — chat completions for a
``completions`` run, the Responses API (with ``file_search``) for a ``responses`` run, nothing for a
``jsonl`` run whose samples were given — grades the sample, and records both under its lease, item
by item, so a killed worker's successor goes on from the first ungraded item.

An item the model cannot answer (a 4xx, e.g. a prompt too long) is graded ``error`` with the
reason; a service that is down (503, unreachable) is not the item's fault: the worker gives the run
back and it is resumed a little later."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ragtune_eval import graders
from ragtune_eval.client import EvalApiError, GatewayClient
from ragtune_eval.tasks import run_each
from ragtune_gateway.repositories import evals as repository
from ragtune_gateway.repositories.evals import ItemRow, RunRow
from ragtune_gateway.services.evaluation_store import LeaseLost
from ragtune_gateway.services.evaluation_worker import EvaluationWorker

log = logging.getLogger(__name__)

CONCURRENCY = 4
DEFAULT_MAX_TOKENS = 256
BACK_OFF_S = 5.0


class ItemError(Exception):
    """The model could not answer this item (the run goes on)."""


class ServiceDown(Exception):
    """A service the run needs is away: the run is given back and resumed later."""


def input_messages(data_source: dict[str, Any], item: dict[str, Any]) -> list[dict[str, str]]:
    spec = data_source.get("input_messages") or {}
    context = {"item": item}
    if spec.get("type") == "item_reference":
        found = graders.lookup(context, spec["item_reference"])
        if not isinstance(found, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in found
        ):
            raise ItemError(f"{spec['item_reference']} is not a list of {{role, content}} messages")
        return [{"role": m["role"], "content": m["content"]} for m in found]
    return [{"role": m["role"], "content": graders.render(m["content"], context)} for m in spec.get("template", [])]


def _sampling(data_source: dict[str, Any]) -> dict[str, Any]:
    params = data_source.get("sampling_params") or {}
    return {k: params[k] for k in ("temperature", "top_p", "seed") if params.get(k) is not None}


async def _call(client: GatewayClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        reply: dict[str, Any] = await client.call("POST", path, json=body)
    except EvalApiError as exc:
        if exc.status is None or exc.status >= 500 or exc.status == 429:
            raise ServiceDown(str(exc)) from None
        raise ItemError(str(exc)) from None
    return reply


async def sample_model(client: GatewayClient, run: RunRow, item: dict[str, Any]) -> dict[str, Any]:
    """The sample namespace of one item: what the model was asked and answered, and its usage."""
    source = run.data_source
    messages = input_messages(source, item)
    params = source.get("sampling_params") or {}
    max_tokens = params.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
    start = time.perf_counter()
    if source["type"] == "completions":
        body: dict[str, Any] = {"model": run.model, "messages": messages, "max_tokens": max_tokens, **_sampling(source)}
        body["store"] = False  # an eval's samples are not traffic, whatever the tenant stores
        if params.get("response_format"):
            body["response_format"] = params["response_format"]
        reply = await _call(client, "/v1/chat/completions", body)
        choice = reply["choices"][0]
        text, finish = choice["message"].get("content") or "", choice.get("finish_reason") or "stop"
        usage = reply.get("usage") or {}
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    else:
        body = {"model": run.model, "input": messages, "max_output_tokens": max_tokens, **_sampling(source)}
        body.pop("seed", None)
        if params.get("tools"):
            body["tools"] = params["tools"]
        reply = await _call(client, "/v1/responses", body)
        text = "".join(
            part.get("text", "")
            for out in reply.get("output", [])
            if out.get("type") == "message"
            for part in out.get("content", [])
            if part.get("type") == "output_text"
        )
        finish = "stop" if reply.get("status") == "completed" else str(reply.get("status"))
        usage = reply.get("usage") or {}
        prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return {
        **graders.sample_namespace(text),
        "model": run.model,
        "input": messages,
        "output": [{"role": "assistant", "content": text}],
        "finish_reason": finish,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cached_tokens": 0,
        },
        "latency_s": round(time.perf_counter() - start, 4),
        "max_completion_tokens": max_tokens,
        "temperature": params.get("temperature", 1.0),
        "top_p": params.get("top_p", 1.0),
        "seed": params.get("seed", 0),
        "error": None,
    }


class EvalRuns:
    """The runs of ``/v1/evals``."""

    async def claim(self, pool: AsyncConnectionPool, owner: str, lease_s: float) -> RunRow | None:
        return await repository.claim(pool, owner, lease_s)

    async def renew(self, pool: AsyncConnectionPool, job_id: str, owner: str, lease_s: float) -> bool:
        return await repository.LEASES.renew(pool, job_id, owner, lease_s)

    async def release(self, pool: AsyncConnectionPool, job_id: str, owner: str) -> bool:
        return await repository.LEASES.release(pool, job_id, owner)

    async def run(self, worker: EvaluationWorker, run: RunRow) -> None:
        pool, owner = worker.runtime.pool, worker.owner
        if (message := worker.gave_up(run)) is not None:
            await repository.finish_run(pool, run.id, owner, "failed", {"code": "worker_died", "message": message})
            return
        evaluation = await repository.get_eval(pool, run.tenant_id, run.eval_id)
        if evaluation is None:  # deleted meanwhile, with its runs
            return
        criteria = evaluation.testing_criteria
        pending = await repository.pending_items(pool, run.id)
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(client: GatewayClient | None, row: ItemRow) -> None:
            async with limit:
                status, sample, results = await self.grade(client, run, row, criteria)
            if not await repository.record_item(pool, run.id, owner, row.idx, sample, results, status):
                raise LeaseLost(run.id)

        try:
            if run.data_source["type"] == "jsonl":
                await run_each(pending, lambda row: one(None, row))
            else:
                async with worker.client(run.tenant_id) as client:
                    await run_each(pending, lambda row: one(client, row))
        except ServiceDown as exc:
            log.warning("eval run %s: %s; giving it back to be resumed", run.id, exc)
            await asyncio.sleep(BACK_OFF_S)
            await self.release(pool, run.id, owner)
            return
        if not await repository.finish_run(pool, run.id, owner, "completed"):
            raise LeaseLost(run.id)

    async def grade(
        self, client: GatewayClient | None, run: RunRow, row: ItemRow, criteria: list[dict[str, Any]]
    ) -> tuple[str, dict[str, Any] | None, list[dict[str, Any]]]:
        """(status, sample, results) of one item."""
        sample = row.sample
        if client is not None:
            try:
                sample = await sample_model(client, run, row.item)
            except ItemError as exc:
                return "error", {"model": run.model, "error": {"code": "sample_error", "message": str(exc)}}, []
        assert sample is not None  # a jsonl run's samples were checked when it was created
        results = await asyncio.to_thread(graders.grade_item, criteria, row.item, sample)
        return ("pass" if all(r["passed"] for r in results) else "fail"), sample, results
