"""What an evaluation leaves behind goes with it: ``DELETE /v1/evaluations/{id}`` removes the vector
store and the context files the run made for the tenant, the row, and the run directory (the dataset
copy, the answers, the report). The fine-tuned adapters stay: they are models the tenant may use or
have promoted to an alias.

Order, so that nothing is left half-deleted: the store and files first (a retriever that is down
answers 503 and the evaluation is still there to delete again), then the row, then the directory; a
directory whose row is gone (a gateway stopped between the two) is swept at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import grpc

from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune_eval.rundir import RunDir
from ragtune_gateway import evaluations, files, store
from ragtune_gateway.auth import metadata
from ragtune_gateway.errors import ApiError, from_rpc_error
from ragtune_gateway.runtime import GatewayRuntime

log = logging.getLogger(__name__)

ORPHAN_AGE_S = 3600.0  # a directory younger than this may belong to an evaluation being created


async def delete_evaluation(runtime: GatewayRuntime, row: evaluations.EvaluationRow, run_dir: Path) -> None:
    """Delete a finished evaluation and what it made (409 while it is queued or running)."""
    if row.status not in evaluations.FINAL:
        message = f"Evaluation {row.id} is {row.status}: cancel it first."
        raise ApiError(409, message, param="evaluation_id", code="evaluation_active")
    state = await asyncio.to_thread(_run_state, run_dir)
    made = state.get("store") or {}
    if made.get("id"):
        try:
            await runtime.downstream.retriever.DeleteCollection(
                rpb.DeleteCollectionRequest(tenant=row.tenant_id, name=made["id"]),
                timeout=runtime.settings.rpc_timeout_s,
                metadata=metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:  # already deleted by the tenant: fine
                raise from_rpc_error(exc, "retriever") from None
    file_ids = [str(f) for f in (made.get("files") or {}).values()]
    if file_ids:
        for file_id in await store.delete_files(runtime.pool, row.tenant_id, file_ids):
            files.remove_bytes(runtime, file_id)
    if not await evaluations.delete_finished(runtime.pool, row.tenant_id, row.id):
        raise ApiError(409, f"Evaluation {row.id} changed meanwhile; retry.", code="evaluation_active")
    await asyncio.to_thread(shutil.rmtree, run_dir, True)


def _run_state(run_dir: Path) -> dict[str, Any]:
    return RunDir(run_dir).state if run_dir.is_dir() else {}


async def sweep_run_dirs(runtime: GatewayRuntime, root: Path) -> int:
    """Remove run directories older than :data:`ORPHAN_AGE_S` whose evaluation is gone; their number."""
    if not root.is_dir():  # noqa: ASYNC240  (once, at start-up)
        return 0
    cutoff = time.time() - ORPHAN_AGE_S
    candidates = {p.name: p for p in root.iterdir() if p.is_dir() and p.stat().st_mtime < cutoff}  # noqa: ASYNC240
    if not candidates:
        return 0
    orphans = set(candidates) - await evaluations.existing_ids(runtime.pool, list(candidates))
    for name in orphans:
        log.info("removing the run directory of deleted evaluation %s", name)
        await asyncio.to_thread(shutil.rmtree, candidates[name], True)
    return len(orphans)
