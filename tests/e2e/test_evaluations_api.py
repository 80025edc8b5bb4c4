"""``/v1/evaluations``: the gateway runs an evaluation itself, in the background, through its own
REST routes with a temporary key of the tenant; bad requests fail at once with the field named;
tenants see only their own evaluations; a cancelled evaluation stays cancelled."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import psycopg
import pytest

from tests.e2e.conftest import Tenant
from tests.e2e.test_eval import write_dataset

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def upload(tenant: Tenant, path: Path, purpose: str = "evals") -> str:
    with path.open("rb") as f:
        response = await tenant.http.post("/v1/files", files={"file": (path.name, f)}, data={"purpose": purpose})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def wait_final(tenant: Tenant, evaluation_id: str, timeout_s: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = (await tenant.http.get(f"/v1/evaluations/{evaluation_id}")).json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return dict(body)
        await asyncio.sleep(1)
    raise AssertionError(f"evaluation {evaluation_id} did not finish in {timeout_s}s")


async def test_gateway_runs_an_evaluation(
    tenant_a: Tenant, tenant_b: Tenant, tmp_path: Path, e2e_database_url: str
) -> None:
    file_id = await upload(tenant_a, write_dataset(tmp_path / "qa.jsonl"))
    request = {"file_id": file_id, "train": 6, "test": 4, "seed": 3, "train_sample": 2, "arms": ["rag", "base"]}
    created = await tenant_a.http.post("/v1/evaluations", json=request)
    assert created.status_code == 200, created.text
    evaluation = created.json()
    assert evaluation["object"] == "evaluation" and evaluation["status"] in ("queued", "running")
    assert evaluation["request"]["arms"] == ["base", "rag"]

    done = await wait_final(tenant_a, evaluation["id"])
    assert done["status"] == "succeeded", done["error"]
    arms = done["report"]["arms"]
    assert list(arms) == ["base", "rag"]
    assert all(arm["questions"] == 4 and arm["train_sample"]["questions"] == 2 for arm in arms.values())
    assert arms["rag"]["retrieval"]["hit_at_k"] == 1.0, "each question's own context is among 5 in the store"
    assert {s["key"] for s in done["progress"]["steps"]} >= {"answer-base", "answer-rag"}
    assert all(s["completed"] == s["total"] for s in done["progress"]["steps"] if s["key"].startswith("answer-"))
    assert done["report"]["recommendation"][-1].startswith("Recommended: ")
    markdown = await tenant_a.http.get(f"/v1/evaluations/{evaluation['id']}/report.md")
    assert markdown.status_code == 200 and "| rag |" in markdown.text
    moved = await tenant_a.http.get(f"/v1/evaluations/{evaluation['id']}/chart.png")
    assert moved.status_code == 308 and moved.headers["location"] == f"/v1/evaluations/{evaluation['id']}/chart.svg"
    chart = await tenant_a.http.get(moved.headers["location"])
    assert chart.status_code == 200 and chart.headers["content-type"].startswith("image/svg+xml")
    assert chart.headers["x-content-type-options"] == "nosniff"
    assert chart.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    labels = {t.text for t in ElementTree.fromstring(chart.content).iter("{http://www.w3.org/2000/svg}text")}
    assert labels >= {"base", "rag"}
    page = await tenant_a.http.get(f"/v1/evaluations/{evaluation['id']}/report.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    assert page.text.count("<svg ") == 3 and "<script" not in page.text and "Paired differences" in page.text
    assert arms["rag"]["f1_ci"]["low"] <= arms["rag"]["f1"] <= arms["rag"]["f1_ci"]["high"]
    assert [(c["baseline"], c["candidate"]) for c in done["report"]["comparisons"]] == [("base", "rag")]
    listed = (await tenant_a.http.get("/v1/evaluations")).json()["data"]
    assert evaluation["id"] in [e["id"] for e in listed]

    # the run's temporary key is revoked: the tenant keeps only its own
    async with await psycopg.AsyncConnection.connect(e2e_database_url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE revoked_at IS NULL), count(*) FROM gateway.api_keys WHERE tenant_id = %s",
            (tenant_a.id,),
        )
        active, total = await cur.fetchone() or (None, None)
    assert active == 1 and total >= 2

    # another tenant sees nothing of it
    for method, path in (
        ("GET", f"/v1/evaluations/{evaluation['id']}"),
        ("POST", f"/v1/evaluations/{evaluation['id']}/cancel"),
        ("GET", f"/v1/evaluations/{evaluation['id']}/report.md"),
        ("GET", f"/v1/evaluations/{evaluation['id']}/report.html"),
    ):
        assert (await tenant_b.http.request(method, path)).status_code == 404, path
    assert evaluation["id"] not in [e["id"] for e in (await tenant_b.http.get("/v1/evaluations")).json()["data"]]
    finished = await tenant_a.http.post(f"/v1/evaluations/{evaluation['id']}/cancel")
    assert finished.status_code == 400


async def test_bad_evaluation_requests_name_the_field(tenant_a: Tenant, tenant_b: Tenant, tmp_path: Path) -> None:
    good = await upload(tenant_a, write_dataset(tmp_path / "qa.jsonl"))
    document = await upload(tenant_a, write_dataset(tmp_path / "doc.jsonl"), purpose="assistants")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "no answers here"}\n{not json\n', encoding="utf-8")
    broken_id = await upload(tenant_a, broken)
    base = {"file_id": good, "train": 6, "test": 4}
    cases: list[tuple[dict[str, Any], str, int]] = [
        ({**base, "file_id": document}, "file_id", 400),
        ({**base, "file_id": broken_id}, "file_id", 400),
        ({**base, "file_id": "file-missing"}, "file_id", 404),
        ({**base, "train": 10}, "train", 400),
        ({**base, "test": 0}, "test", 400),
        ({**base, "arms": ["rag", "fine-tune"]}, "arms[1]", 400),
        ({**base, "mode": "semantic"}, "mode", 400),
        ({**base, "arms": ["base", "rag"], "promote": {"alias": "ft:best", "arm": "ft"}}, "promote.arm", 400),
        ({**base, "promote": {"alias": "best", "arm": "ft"}}, "promote.alias", 400),
        ({**base, "surprise": 1}, "surprise", 400),
    ]
    before = len((await tenant_a.http.get("/v1/evaluations")).json()["data"])
    for body, param, status in cases:
        response = await tenant_a.http.post("/v1/evaluations", json=body)
        assert response.status_code == status and response.json()["error"]["param"] == param, (body, response.text)
    other = await tenant_b.http.post("/v1/evaluations", json=base)
    assert other.status_code == 404 and other.json()["error"]["param"] == "file_id", "another tenant's file"
    assert len((await tenant_a.http.get("/v1/evaluations")).json()["data"]) == before, "nothing half-created"


async def test_cancelled_evaluation_stays_cancelled(tenant_a: Tenant, tmp_path: Path, e2e_database_url: str) -> None:
    """Cancelled while its fine-tuning job trains (seen on the job's own event stream): the
    evaluation is ``cancelled`` at once, the same stream then reports its training job ``cancelled``
    (not left to succeed), and once nothing runs the evaluation any more (no worker holds its lease)
    it is still cancelled, with no report."""
    file_id = await upload(tenant_a, write_dataset(tmp_path / "qa.jsonl"))
    earlier = await _evaluation_jobs(tenant_a)
    body = {"file_id": file_id, "train": 6, "test": 4, "arms": ["ft"], "epochs": 50, "max_seq_length": 512}
    created = (await tenant_a.http.post("/v1/evaluations", json=body)).json()
    async with asyncio.timeout(600):
        job_id = await _new_evaluation_job(tenant_a, earlier)
        statuses: list[str] = []
        cancelled: dict[str, Any] = {}
        url = f"/v1/fine_tuning/jobs/{job_id}/events"
        async with tenant_a.http.stream("GET", url, params={"stream": "true"}, timeout=None) as events:
            assert events.status_code == 200
            async for line in events.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:])
                if "status" in event.get("data", {}):
                    statuses.append(event["data"]["status"])
                if event.get("type") == "metrics" and not cancelled:  # the job is training now
                    response = await tenant_a.http.post(f"/v1/evaluations/{created['id']}/cancel")
                    assert response.status_code == 200, response.text
                    cancelled = response.json()
    assert cancelled.get("status") == "cancelled", "the evaluation's job finished before it could be cancelled"
    assert statuses[-1] == "cancelled", f"the evaluation's training job ended {statuses[-1]}, not cancelled"
    assert (await tenant_a.http.get(f"/v1/fine_tuning/jobs/{job_id}")).json()["status"] == "cancelled"

    async with await psycopg.AsyncConnection.connect(e2e_database_url, autocommit=True) as conn:
        held = await conn.execute("SELECT lease_owner FROM gateway.evaluations WHERE id = %s", (created["id"],))
        assert await held.fetchone() == (None,), "the cancelled evaluation is still leased to a worker"
        answered = "SELECT count(*) FROM gateway.evaluation_results WHERE evaluation_id = %s"
        before = await (await conn.execute(answered, (created["id"],))).fetchone()
        await asyncio.sleep(3)
        after = await (await conn.execute(answered, (created["id"],))).fetchone()
    assert before == after, "the cancelled evaluation is still being run"
    again = (await tenant_a.http.get(f"/v1/evaluations/{created['id']}")).json()
    assert again["status"] == "cancelled" and again["finished_at"] and again["report"] is None


async def _evaluation_jobs(tenant: Tenant) -> set[str]:
    jobs = (await tenant.http.get("/v1/fine_tuning/jobs", params={"limit": 100})).json()["data"]
    return {j["id"] for j in jobs if (j.get("user_provided_suffix") or "").startswith("eval-ft")}


async def _new_evaluation_job(tenant: Tenant, earlier: set[str]) -> str:
    """The fine-tuning job the new evaluation created (waits for it to appear)."""
    for _ in range(600):
        if new := await _evaluation_jobs(tenant) - earlier:
            assert len(new) == 1, new
            return new.pop()
        await asyncio.sleep(0.5)
    raise AssertionError("the evaluation created no fine-tuning job in 300 s")
