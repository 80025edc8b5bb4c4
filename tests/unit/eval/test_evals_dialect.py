"""An arm's eval run: created once (its id kept before anything waits), read page by page, and
forgotten when it failed so that a rerun asks again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ragtune_eval.client import EvalApiError
from ragtune_eval.evals_dialect import ensure_eval, run_items, sample_of
from ragtune_eval.rundir import RunDir
from ragtune_eval.runner import NoProgress


class Gateway:
    def __init__(self, status: str, items: int) -> None:
        self.status, self.items = status, items
        self.calls: list[tuple[str, str]] = []
        self.uploads: list[bytes] = []

    async def upload(self, filename: str, data: bytes, purpose: str) -> str:
        assert purpose == "evals"
        self.uploads.append(data)
        return "file-1"

    async def call(self, method: str, path: str, json: Any = None, params: Any = None) -> Any:
        self.calls.append((method, path))
        if path == "/v1/evals":
            return {"id": "eval_1"}
        if method == "POST":
            assert json["data_source"]["source"] == {"type": "file_id", "id": "file-1"}
            return {"id": f"evalrun_{len(self.uploads)}"}
        if path.endswith("output_items"):
            data = [
                {"id": f"oi-{i}", "sample": {"output": [{"role": "assistant", "content": str(i)}]}}
                for i in range(self.items)
            ]
            start = next((i + 1 for i, o in enumerate(data) if o["id"] == params.get("after")), 0)
            return {"data": data[start : start + params["limit"]], "has_more": start + params["limit"] < len(data)}
        error = {"message": "the worker died"} if self.status == "failed" else None
        return {"status": self.status, "name": "ft", "result_counts": {"total": self.items}, "error": error}


async def test_a_run_is_made_once_and_read_in_pages(tmp_path: Path) -> None:
    gateway, run = Gateway("completed", 230), RunDir(tmp_path)
    eval_id = await ensure_eval(gateway, run, "t", {})  # type: ignore[arg-type]
    assert eval_id == await ensure_eval(gateway, run, "t", {}) == "eval_1"  # type: ignore[arg-type]
    items = [{"id": "a", "reference": "x", "messages": []}]
    found = await run_items(gateway, run, eval_id, "ft", "m", items, 8, NoProgress())  # type: ignore[arg-type]
    assert [sample_of(o)[0] for o in found] == [str(i) for i in range(230)]
    again = await run_items(gateway, RunDir(tmp_path), eval_id, "ft", "m", [], 8, NoProgress())  # type: ignore[arg-type]
    assert (
        len(again) == 230
        and len(gateway.uploads) == 1
        and [c for c in gateway.calls if c[0] == "POST"]
        == [
            ("POST", "/v1/evals"),
            ("POST", "/v1/evals/eval_1/runs"),
        ]
    )
    assert sample_of({"status": "error", "sample": None}) == ("", {})


async def test_a_failed_run_is_forgotten_so_a_rerun_asks_again(tmp_path: Path) -> None:
    gateway, run = Gateway("failed", 1), RunDir(tmp_path)
    with pytest.raises(EvalApiError, match="ended failed: the worker died; a rerun starts a new run"):
        await run_items(gateway, run, "eval_1", "ft", "m", [{"id": "a"}], 8, NoProgress())  # type: ignore[arg-type]
    assert RunDir(tmp_path).state["eval_runs"] == {}
