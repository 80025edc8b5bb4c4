"""A task evaluation's held-out answers as the runs of one eval in the OpenAI Evals dialect, so the
gateway's own verdict (``GET /v1/evals/{id}/comparison``: pass rates with intervals, paired tests,
a recommendation), ``POST /v1/evals/{id}/promote`` and any OpenAI client see the arms.

The harness builds each item's messages itself (for the retrieval arms with the demonstrations it
searched) and hands them over as ``item.messages``: every arm is a ``completions`` run on the same
items, the base model's or an adapter's. The run is a leased job of the gateway: once created (its
id kept in the run directory's state before anything waits on it) it goes on if the harness dies,
and a rerun waits for the same run instead of asking again. The eval's grader is exact string
equality with the reference output; the report scores the answers with the task's own metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ragtune_eval.client import EvalApiError, GatewayClient
from ragtune_eval.indexing import Progress
from ragtune_eval.rundir import RunStore

ITEM_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "reference": {"type": "string"},
        "messages": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["id", "reference", "messages"],
}
GRADER = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.reference}}",
    "operation": "eq",
}
FINISHED = ("completed", "failed", "canceled")
POLL_S = 2.0


async def ensure_eval(client: GatewayClient, run: RunStore, name: str, metadata: dict[str, str]) -> str:
    """The eval of this run directory, created once."""
    if found := run.state.get("eval_id"):
        return str(found)
    body = {
        "name": name,
        "metadata": metadata,
        "data_source_config": {"type": "custom", "item_schema": ITEM_SCHEMA, "include_sample_schema": True},
        "testing_criteria": [GRADER],
    }
    created = await client.call("POST", "/v1/evals", json=body)
    run.state["eval_id"] = created["id"]
    await run.save_state()
    return str(created["id"])


async def run_items(
    client: GatewayClient,
    run: RunStore,
    eval_id: str,
    key: str,
    model: str,
    items: list[dict[str, Any]],
    max_tokens: int,
    progress: Progress,
) -> list[dict[str, Any]]:
    """The output items of the eval run ``key`` (``model`` on ``items``): created once, then waited
    for. ``items`` may be empty when the run exists already (a resumed harness)."""
    runs = run.state.setdefault("eval_runs", {})
    if key not in runs:
        lines = "".join(json.dumps({"item": item}, ensure_ascii=False) + "\n" for item in items)
        file_id = await client.upload(f"{key}.jsonl", lines.encode("utf-8"), "evals")
        body = {
            "name": key,
            "data_source": {
                "type": "completions",
                "model": model,
                "input_messages": {"type": "item_reference", "item_reference": "item.messages"},
                "sampling_params": {"max_completion_tokens": max_tokens, "temperature": 0},
                "source": {"type": "file_id", "id": file_id},
            },
        }
        created = await client.call("POST", f"/v1/evals/{eval_id}/runs", json=body)
        runs[key] = created["id"]
        await run.save_state()
    run_id = runs[key]
    found = await wait_for_run(client, eval_id, run_id, f"answer-{key}", progress, len(items) or None)
    if found["status"] != "completed":  # forgotten, so that a rerun asks again in a new run
        del runs[key]
        await run.save_state()
        error = (found.get("error") or {}).get("message") or found["status"]
        raise EvalApiError(f"eval run {run_id} ({key}) ended {found['status']}: {error}; a rerun starts a new run")
    return await output_items(client, eval_id, run_id)


async def wait_for_run(
    client: GatewayClient, eval_id: str, run_id: str, progress_key: str, progress: Progress, expected: int | None
) -> dict[str, Any]:
    """The run once it has finished; ``expected``: its item count, when known (for the progress)."""
    started = False
    while True:
        found: dict[str, Any] = await client.call("GET", f"/v1/evals/{eval_id}/runs/{run_id}")
        counts = found.get("result_counts") or {}
        if not started:
            progress.start(progress_key, f"asking {found.get('name')} (eval run {run_id})", expected)
            started = True
        progress.update(progress_key, int(counts.get("total") or 0), expected)  # total: the items graded so far
        if found["status"] in FINISHED:
            return found
        await asyncio.sleep(POLL_S)


async def output_items(client: GatewayClient, eval_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every output item of a run, page by page."""
    out: list[dict[str, Any]] = []
    after = ""
    while True:
        params = {"limit": 100, "order": "asc", **({"after": after} if after else {})}
        page = await client.call("GET", f"/v1/evals/{eval_id}/runs/{run_id}/output_items", params=params)
        out.extend(page["data"])
        if not page.get("has_more") or not page["data"]:
            return out
        after = page["data"][-1]["id"]


def sample_of(output_item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The answer text of an output item and its sample ({} when the model could not answer it)."""
    sample = output_item.get("sample") or {}
    answer = next((m.get("content") or "" for m in sample.get("output") or [] if m.get("role") == "assistant"), "")
    return str(answer), sample
