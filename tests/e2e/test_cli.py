"""The `ragtune` CLI against the live stack (run in a worker thread: the stack serves on this loop)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ragtune_eval.cli.main import app
from tests.e2e.conftest import Tenant
from tests.e2e.test_fine_tuning import TRAINING

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def ragtune(gateway_url: str, tenant: Tenant, *args: str) -> Result:
    env = {"RAGTUNE_BASE_URL": gateway_url, "RAGTUNE_API_KEY": tenant.key, "COLUMNS": "200"}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result


async def test_cli_ingest_ask_models_jobs(gateway_url: str, tenant_b: Tenant, base_model: str, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "parking.md").write_text("# Parking\n\nThe staff car park opens at 6:30 and closes at 22:00.\n")
    (docs / "canteen.txt").write_text("The canteen serves lunch from noon until two o'clock.\n")
    (docs / "ignored.bin").write_bytes(b"\x00\x01")
    ingested = await ragtune(gateway_url, tenant_b, "ingest", str(docs), "--store", "cli-docs")
    assert "2 file(s) in vector store vs_" in ingested.output
    store_id = re.search(r"(vs_[0-9a-f]+)", ingested.output).group(1)  # type: ignore[union-attr]

    answer = await ragtune(
        gateway_url, tenant_b, "ask", "When does the car park open?", "--store", "cli-docs", "--max-tokens", "16"
    )
    assert "[1] parking.md" in answer.output and "6:30" in answer.output

    models = await ragtune(gateway_url, tenant_b, "models")
    listed = [m["id"] for m in (await tenant_b.http.get("/v1/models")).json()["data"]]
    assert base_model in listed and all(model_id in models.output for model_id in listed), (listed, models.output)
    started = await ragtune(gateway_url, tenant_b, "finetune", str(_training(tmp_path)), "--epochs", "50")
    job_id = re.search(r"(ftjob-[0-9a-zA-Z]+)", started.output).group(1)  # type: ignore[union-attr]
    assert (await tenant_b.http.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")).json()["status"] == "cancelled"
    jobs = await ragtune(gateway_url, tenant_b, "jobs")
    assert job_id in jobs.output and "cancelled" in jobs.output
    await tenant_b.http.delete(f"/v1/vector_stores/{store_id}")


def _training(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text(TRAINING)
    return path


async def test_cli_reports_errors_without_traceback(gateway_url: str, tenant_b: Tenant) -> None:
    env = {"RAGTUNE_BASE_URL": gateway_url, "RAGTUNE_API_KEY": "rt-wrong"}
    result = await asyncio.to_thread(CliRunner().invoke, app, ["models"], env=env)
    assert result.exit_code == 1 and "HTTP 401" in result.output and "Traceback" not in result.output
