"""Two gateway replicas, as Kubernetes runs them: separate processes with separate state
directories (each pod its own disk) on one database and one set of services, requests spread
round-robin as a Service would. A file uploaded through one is read and added to a vector store
through the other; an evaluation created on one is read, cancelled and deleted on the other; the
replica running an evaluation is killed with SIGKILL and the other resumes it from its last answered
question and finishes it. Every request a single gateway would have answered is answered (once a
replica is dead the balancer sends nothing more to it, as a Service drops a pod whose readiness
fails), and nothing acknowledged is lost: file contents are compared byte for byte. The table is
printed (``pytest -s``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio

from ragtune_common.launcher import METRICS_PORT_OFFSET
from ragtune_gateway.services.evaluation_worker import JOB_KEY_LEASES
from tests.faults.test_fault_matrix import ADMIN_KEY, Tally, _http_ready, _wait
from tests.ports import free_port_block

QA = [
    {"question": f"Which colour is locker {i}?", "answers": [f"colour {i}"], "context": f"Locker {i} is colour {i}."}
    for i in range(12)
]
TEST, TRAIN, TRAIN_SAMPLE = 6, 6, 2
LEASE_S = 6


@dataclass
class Replica:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    alive: bool = True


@dataclass
class Balancer:
    """Round-robin over the live replicas, one request at a time, with a tally of every answer."""

    replicas: list[Replica]
    key: str
    tally: Tally = field(default_factory=Tally)
    turn: Iterator[int] = field(default_factory=itertools.count)

    def pick(self) -> Replica:
        live = [r for r in self.replicas if r.alive]
        return live[next(self.turn) % len(live)]

    async def send(self, method: str, path: str, on: Replica | None = None, **kwargs: Any) -> httpx.Response:
        replica = on or self.pick()
        headers = {"Authorization": f"Bearer {self.key}"}
        self.tally.requests += 1
        async with httpx.AsyncClient(base_url=replica.url, timeout=120, headers=headers) as http:
            try:
                reply = await http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                self.tally.failures[f"{replica.name}: {type(exc).__name__}"] += 1
                raise
        if reply.status_code >= 500:  # a 404 below is asked for on purpose
            self.tally.failures[str(reply.status_code)] += 1
            raise AssertionError(f"{method} {path} on {replica.name}: {reply.status_code} {reply.text[:300]}")
        self.tally.ok += 1
        return reply


@dataclass
class Stack:
    services: subprocess.Popen[bytes]
    home: Path
    env: dict[str, str]
    gateway_ports: list[int]
    replicas: list[Replica] = field(default_factory=list)

    def start_gateway(self, name: str, port: int) -> Replica:
        """A gateway process with a state directory of its own (a pod's disk), empty at each start."""
        state = self.home / f"state-{name}-{uuid.uuid4().hex[:6]}"
        state.mkdir()
        env = dict(self.env, RAGTUNE_STATE_DIR=str(state), RAGTUNE_GATEWAY_PORT=str(port))
        log = self.home / f"gateway-{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "ragtune_gateway.main"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        return Replica(name, f"http://127.0.0.1:{port}", process, log)

    def restart(self, replica: Replica) -> None:
        replica.process = self.start_gateway(replica.name, int(replica.url.rsplit(":", 1)[1])).process
        replica.alive = True


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    fault_database: str, base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    home = tmp_path_factory.mktemp("gateways")
    shared = home / "services"
    (shared / "models").mkdir(parents=True)
    os.symlink(base_model_dir, shared / "models" / base_model_dir.name)  # converted once per session
    base = free_port_block([i + m for i in range(5) for m in (0, METRICS_PORT_OFFSET)])
    env = dict(
        os.environ,
        DATABASE_URL=fault_database,
        RAGTUNE_RETRIEVER_PORT=str(base),
        RAGTUNE_GENERATOR_PORT=str(base + 1),
        RAGTUNE_TRAINER_PORT=str(base + 2),
        RAGTUNE_GENERATOR_MAX_MODEL_LEN="1024",
        RAGTUNE_GATEWAY_RETRIEVER_ADDRESS=f"127.0.0.1:{base}",
        RAGTUNE_GATEWAY_GENERATOR_ADDRESS=f"127.0.0.1:{base + 1}",
        RAGTUNE_GATEWAY_TRAINER_ADDRESS=f"127.0.0.1:{base + 2}",
        RAGTUNE_GATEWAY_ADMIN_KEY=ADMIN_KEY,
        RAGTUNE_GATEWAY_RATE_LIMIT_PER_S="0",
        RAGTUNE_GATEWAY_EVALUATION_LEASE_S=str(LEASE_S),
        RAGTUNE_GATEWAY_EVALUATION_POLL_S="1",
    )
    env["RAGTUNE_SERVICE_TOKEN"] = f"two-gateways-{uuid.uuid4().hex}"  # the services' and both gateways'
    out = home / "services.log"
    with out.open("wb") as log:
        services = subprocess.Popen(  # noqa: ASYNC220 (started once, before the loop has work)
            [sys.executable, "-m", "ragtune_common.launcher", "--services", "retriever,generator,trainer",
             "--state-dir", str(shared), "--grace", "5"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    stack = Stack(services, home, env, [base + 3, base + 4])
    try:
        await _wait(lambda: "ragtune is up" in out.read_text() or services.poll() is not None, 900, "the services")
        assert "ragtune is up" in out.read_text(), out.read_text()[-4000:]
        for name, port in zip("AB", stack.gateway_ports, strict=True):
            stack.replicas.append(stack.start_gateway(name, port))
        for replica in stack.replicas:
            await _started(replica)
        yield stack
    finally:
        for replica in stack.replicas:
            if replica.process.poll() is None:
                replica.process.terminate()
        for replica in stack.replicas:
            replica.process.wait(timeout=60)
        services.send_signal(signal.SIGINT)
        try:
            services.wait(timeout=90)
        except subprocess.TimeoutExpired:
            services.kill()
            services.wait()


async def _started(replica: Replica) -> None:
    def up() -> bool:
        return _http_ready(replica.url) or replica.process.poll() is not None

    await _wait(up, 120, f"gateway {replica.name}")
    assert replica.process.poll() is None, replica.log.read_text()[-4000:]


async def _tenant_key(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=60, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        tenant = await admin.post("/v1/admin/tenants", json={"name": "replicas"})
        assert tenant.status_code == 200, tenant.text
        key = await admin.post(f"/v1/admin/tenants/{tenant.json()['id']}/keys")
        assert key.status_code == 200, key.text
        return str(key.json()["key"])


async def _upload(lb: Balancer, name: str, data: bytes, purpose: str, on: Replica) -> str:
    reply = await lb.send("POST", "/v1/files", on=on, files={"file": (name, data)}, data={"purpose": purpose})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["id"])


def _scalar(database: str, query: str, *params: object) -> Any:
    with psycopg.connect(database, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]  # a literal of this file
    return row[0] if row else None


async def _until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


async def test_any_replica_serves_any_request_and_finishes_a_killed_ones_evaluation(
    stack: Stack, fault_database: str, tmp_path: Path
) -> None:
    a, b = stack.replicas
    lb = Balancer(stack.replicas, await _tenant_key(a.url))
    lost: list[str] = []

    # files: uploaded on one, read back and added to a vector store on the other
    created_store = await lb.send("POST", "/v1/vector_stores", json={"name": "replicas"})
    assert created_store.status_code == 200, created_store.text
    store = created_store.json()["id"]
    acked: dict[str, bytes] = {}
    for i in range(6):
        here, there = (a, b) if i % 2 == 0 else (b, a)
        data = f"Replica note {i}: room {i} has {i + 2} chairs. {uuid.uuid4().hex}".encode()
        file_id = await _upload(lb, f"note-{i}.txt", data, "assistants", here)
        acked[file_id] = data
        content = await lb.send("GET", f"/v1/files/{file_id}/content", on=there)
        assert content.content == data, f"{file_id} read on {there.name}"
        added = await lb.send("POST", f"/v1/vector_stores/{store}/files", on=there, json={"file_id": file_id})
        assert added.status_code == 200 and added.json()["status"] == "completed", added.text
    hits = (await lb.send("POST", f"/v1/vector_stores/{store}/search", json={"query": "room 3 chairs"})).json()
    assert any(h["file_id"] in acked for h in hits["data"])

    # an evaluation created on A, read on B; its runner killed mid-run; the other finishes it
    dataset = "".join(json.dumps(row) + "\n" for row in QA).encode()
    qa_file = await _upload(lb, "qa.jsonl", dataset, "evals", a)
    body = {"file_id": qa_file, "train": TRAIN, "test": TEST, "train_sample": TRAIN_SAMPLE, "arms": ["base"]}
    created = (await lb.send("POST", "/v1/evaluations", on=a, json=body)).json()
    evaluation = created["id"]
    assert (await lb.send("GET", f"/v1/evaluations/{evaluation}", on=b)).json()["id"] == evaluation
    answered = "SELECT count(*) FROM gateway.evaluation_results WHERE evaluation_id = %s"

    async def midway() -> bool:
        await lb.send("GET", f"/v1/evaluations/{evaluation}")
        return bool(_scalar(fault_database, answered, evaluation) >= 2)

    await _until(midway, 600, "two answered questions")
    owner = str(_scalar(fault_database, "SELECT lease_owner FROM gateway.evaluations WHERE id = %s", evaluation))
    victim = next(r for r in stack.replicas if r.process.pid == int(owner.split(":")[1]))
    survivor = b if victim is a else a
    os.kill(victim.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    victim.process.wait()
    victim.alive = False
    before_kill = _scalar(fault_database, answered, evaluation)

    async def finished() -> dict[str, Any] | None:
        found = (await lb.send("GET", f"/v1/evaluations/{evaluation}")).json()
        return found if found["status"] in ("succeeded", "failed", "cancelled") else None

    done = await _until(finished, 900, "the evaluation to finish on the survivor")
    assert done["status"] == "succeeded", done
    rows = _scalar(fault_database, answered, evaluation)
    distinct = _scalar(
        fault_database,
        "SELECT count(DISTINCT (result->>'split', result->>'id')) FROM gateway.evaluation_results"
        " WHERE evaluation_id = %s",
        evaluation,
    )
    attempts = _scalar(fault_database, "SELECT attempts FROM gateway.evaluations WHERE id = %s", evaluation)
    assert rows == distinct == TEST + TRAIN_SAMPLE, "each question answered once, across the two workers"
    assert attempts == 2 and before_kill >= 2
    assert done["report"]["arms"]["base"]["questions"] == TEST

    # the killed worker never revoked the key it made for the run: the key expires on its own
    tenant = _scalar(fault_database, "SELECT tenant_id FROM gateway.evaluations WHERE id = %s", evaluation)
    await asyncio.sleep(max(0.0, killed_at + JOB_KEY_LEASES * LEASE_S + 1 - time.monotonic()))
    valid_keys = (
        "SELECT count(*) FROM gateway.api_keys WHERE tenant_id = %s AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now())"
    )
    assert _scalar(fault_database, valid_keys, tenant) == 1, "only the test's own key stays valid"

    # the killed replica comes back (its pod restarted, its disk empty): it serves what the other made
    stack.restart(victim)
    await _started(victim)
    for replica in (victim, survivor):
        report = await lb.send("GET", f"/v1/evaluations/{evaluation}/report.md", on=replica)
        assert report.status_code == 200 and "| base |" in report.text, (replica.name, report.text[:300])
    for file_id, data in acked.items():
        for replica in (victim, survivor):
            content = await lb.send("GET", f"/v1/files/{file_id}/content", on=replica)
            if content.content != data:
                lost.append(f"{file_id} on {replica.name}")

    # created on one, cancelled and deleted on the other
    second = (await lb.send("POST", "/v1/evaluations", on=victim, json=body)).json()["id"]
    cancelled = await lb.send("POST", f"/v1/evaluations/{second}/cancel", on=survivor)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    await asyncio.sleep(2 * LEASE_S)  # a late writer would have had its chance
    assert (await lb.send("GET", f"/v1/evaluations/{second}", on=victim)).json()["status"] == "cancelled"
    assert (await lb.send("DELETE", f"/v1/evaluations/{second}", on=survivor)).status_code == 200
    assert (await lb.send("GET", f"/v1/evaluations/{second}", on=victim)).status_code == 404

    tally = lb.tally
    print("\ntwo gateways | requests | failed | lost | failures")
    print(
        f"round-robin, one killed mid-evaluation | {tally.requests} | {tally.failed} | {len(lost)} | {tally.failures}"
    )
    (tmp_path / "two-gateways.json").write_text(
        json.dumps({"requests": tally.requests, "failed": tally.failed, "lost": len(lost), "failures": tally.failures})
    )
    assert not lost, lost
    assert tally.failed == 0, (tally.failures, tally.bad[:5])
