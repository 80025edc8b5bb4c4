"""The fault matrix, with real processes: the whole stack as ``ragtune up`` starts it (two retriever
replicas, one of everything else), driven through REST while each service is killed with SIGKILL.

For each fault: every request gets a 2xx or a retryable answer (503 with Retry-After while a service
is down; a refused connection while the gateway itself is down), never a 500; the supervisor brings
the process back; and nothing a 2xx acknowledged is lost (files, vector store files, fine-tuning
jobs are all there afterwards). The table is printed (``pytest -s``) and written to
``<tmp>/fault-matrix.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import pytest_asyncio

from ragtune_common.launcher import METRICS_PORT_OFFSET, REPLICA_PORT_STEP, health_status
from tests.ports import free_port_block

ADMIN_KEY = "fault-matrix-admin-key-0123456789abcdef"
SEARCH = "/ragtune.retriever.v1.RetrieverService/Search"
SERVING = 1
TRAINING_LINES = [
    {"messages": [{"role": "user", "content": f"Say the code word {i}."}, {"role": "assistant", "content": "tulip"}]}
    for i in range(12)
]


@dataclass
class Tally:
    requests: int = 0
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)  # answers that are neither 2xx nor retryable

    def record(self, reply: httpx.Response | None, error: str = "") -> bool:
        self.requests += 1
        if reply is None:
            self.failures[error] += 1
            return False
        if reply.is_success:
            self.ok += 1
            return True
        self.failures[str(reply.status_code)] += 1
        if reply.status_code != 503 or "retry-after" not in reply.headers:
            self.bad.append(f"{reply.status_code} {reply.text[:300]}")
        return False

    @property
    def failed(self) -> int:
        return self.requests - self.ok


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    url: str
    ports: dict[str, list[int]]


def _listening_pid(port: int) -> int:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return int(conn.pid)
    raise AssertionError(f"nothing listens on {port}")


async def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    fault_database: str, base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    home = tmp_path_factory.mktemp("faults")
    state = home / "state"
    (state / "models").mkdir(parents=True)
    os.symlink(base_model_dir, state / "models" / base_model_dir.name)  # converted once per session
    base = free_port_block(
        [i + s + m for i in range(4) for s in (0, REPLICA_PORT_STEP) for m in (0, METRICS_PORT_OFFSET)]
    )
    ports = {"retriever": [base, base + REPLICA_PORT_STEP], "generator": [base + 1], "trainer": [base + 2]}
    env = dict(
        os.environ,
        DATABASE_URL=fault_database,
        RAGTUNE_RETRIEVER_PORT=str(base),
        RAGTUNE_GENERATOR_PORT=str(base + 1),
        RAGTUNE_TRAINER_PORT=str(base + 2),
        RAGTUNE_GATEWAY_PORT=str(base + 3),
        RAGTUNE_GATEWAY_ADMIN_KEY=ADMIN_KEY,
        RAGTUNE_GENERATOR_MAX_MODEL_LEN="1024",
        RAGTUNE_TRAINER_LEASE_S="15",
        RAGTUNE_GATEWAY_RATE_LIMIT_PER_S="0",  # the faults are the subject here, not fairness
    )
    env.pop("RAGTUNE_SERVICE_TOKEN", None)
    out, err = home / "stdout", home / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: ASYNC220 (started once, before the loop has work)
            [sys.executable, "-m", "ragtune_common.launcher", "--replicas", "retriever=2", "--state-dir", str(state),
             "--grace", "5"],
            env=env, stdout=stdout, stderr=stderr,
        )  # fmt: skip
    stack = Stack(process, out, err, f"http://127.0.0.1:{base + 3}", ports)
    try:
        await _wait(lambda: "ragtune is up" in out.read_text() or process.poll() is not None, 900, "the stack")
        assert "ragtune is up" in out.read_text(), err.read_text()[-4000:]
        yield stack
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=120) as admin:
        admin.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        tenant = (await admin.post("/v1/admin/tenants", json={"name": "faults"})).json()["id"]
        key = (await admin.post(f"/v1/admin/tenants/{tenant}/keys")).json()["key"]
    async with httpx.AsyncClient(base_url=stack.url, timeout=300, headers={"Authorization": f"Bearer {key}"}) as http:
        yield http


async def _call(tally: Tally, send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response | None:
    try:
        reply = await send()
    except httpx.TransportError as exc:
        tally.record(None, f"connection: {type(exc).__name__}")
        return None
    return reply if tally.record(reply) else None


async def _upload(http: httpx.AsyncClient, name: str, text: str, purpose: str = "assistants") -> httpx.Response:
    return await http.post("/v1/files", files={"file": (name, text.encode())}, data={"purpose": purpose})


def _searches_on(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port + METRICS_PORT_OFFSET}/metrics", timeout=5) as reply:
        lines = reply.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if SEARCH in line and "requests_total" in line)


MATRIX: dict[str, dict[str, object]] = {}


def _row(fault: str, tally: Tally, lost: int) -> None:
    MATRIX[fault] = {"requests": tally.requests, "failed": tally.failed, "failures": dict(tally.failures), "lost": lost}


def _http_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


async def _restarted(stack: Stack, label: str, port: int, timeout_s: float) -> None:
    await _wait(lambda: f"{label} restarted" in stack.err.read_text(), 120, f"{label} to be restarted")
    await _wait(lambda: health_status(f"127.0.0.1:{port}") == SERVING, timeout_s, f"{label} SERVING again")


async def test_fault_matrix(stack: Stack, client: httpx.AsyncClient, tmp_path: Path):
    store = (await client.post("/v1/vector_stores", json={"name": "faults"})).json()["id"]
    acked_files: dict[str, bytes] = {}  # id -> the bytes sent
    acked_store_files: list[str] = []

    async def write_one(tally: Tally, i: int) -> None:
        text = f"Fault matrix note {i}: the meeting room {i} has {i % 7 + 2} chairs and a projector."
        uploaded = await _call(tally, lambda: _upload(client, f"note-{uuid.uuid4().hex[:6]}.txt", text))
        if uploaded is None:
            return
        file_id = uploaded.json()["id"]
        acked_files[file_id] = text.encode()
        added = await _call(tally, lambda: client.post(f"/v1/vector_stores/{store}/files", json={"file_id": file_id}))
        if added is not None:
            acked_store_files.append(file_id)

    seed = Tally()
    for i in range(6):
        await write_one(seed, i)
    assert seed.failed == 0, seed.failures

    # 1. a retriever replica killed during 200 searches: the other answers every one
    tally, done = Tally(), 0
    victim_port = stack.ports["retriever"][1]

    async def searcher() -> None:
        nonlocal done
        while done < 200:
            done += 1
            await _call(tally, lambda: client.post(f"/v1/vector_stores/{store}/search", json={"query": "chairs"}))

    workers = [asyncio.ensure_future(searcher()) for _ in range(4)]
    await _wait(lambda: done >= 40, 300, "40 searches")
    assert all(_searches_on(port) > 0 for port in stack.ports["retriever"]), "searches did not land on both replicas"
    os.kill(_listening_pid(victim_port), signal.SIGKILL)
    await asyncio.gather(*workers)
    _row("kill -9 one of 2 retrievers", tally, 0)
    assert tally.failed == 0, tally.failures
    await _restarted(stack, "retriever-1", victim_port, 180)

    # 2. the generator killed under chat load: 503 + Retry-After while it restarts, then answers again
    tally, after = Tally(), 0
    killed = asyncio.Event()
    chat = {"model": "SmolLM2-135M-Instruct", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}

    async def chatter() -> None:
        nonlocal after
        while after < 3:
            reply = await _call(tally, lambda: client.post("/v1/chat/completions", json=chat))
            if reply is not None and killed.is_set():
                after += 1
            await asyncio.sleep(0.2)

    workers = [asyncio.ensure_future(chatter()) for _ in range(2)]
    await _wait(lambda: tally.ok >= 3, 300, "3 chat completions")
    generator = psutil.Process(_listening_pid(stack.ports["generator"][0]))
    engine = generator.children(recursive=True)  # vLLM's engine core and its worker
    assert engine
    os.kill(generator.pid, signal.SIGKILL)
    killed.set()
    await _restarted(stack, "generator", stack.ports["generator"][0], 600)
    # the supervisor killed what the dead generator had spawned: no orphaned engine holding gigabytes
    assert not [p for p in engine if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    await asyncio.wait_for(asyncio.gather(*workers), 300)
    _row("kill -9 the generator", tally, 0)
    assert not tally.bad, tally.bad[:5]
    assert tally.failed > 0  # the outage was seen, and answered as retryable

    # 3. the trainer killed after a job was acknowledged: 503 while down, the job is still there after
    tally = Tally()
    dataset = "\n".join(json.dumps(line) for line in TRAINING_LINES) + "\n"
    training = await _call(tally, lambda: _upload(client, "train.jsonl", dataset, "fine-tune"))
    assert training is not None, tally.failures
    job = await _call(
        tally,
        lambda: client.post(
            "/v1/fine_tuning/jobs",
            json={
                "model": "SmolLM2-135M-Instruct",
                "training_file": training.json()["id"],
                "hyperparameters": {"n_epochs": 1},
            },
        ),
    )
    assert job is not None, tally.failures
    job_id = job.json()["id"]
    os.kill(_listening_pid(stack.ports["trainer"][0]), signal.SIGKILL)
    deadline = time.monotonic() + 300
    while await asyncio.to_thread(health_status, f"127.0.0.1:{stack.ports['trainer'][0]}") != SERVING:
        assert time.monotonic() < deadline, "the trainer did not come back"
        await _call(tally, lambda: client.get(f"/v1/fine_tuning/jobs/{job_id}"))
        await asyncio.sleep(0.3)
    found = await _call(tally, lambda: client.get(f"/v1/fine_tuning/jobs/{job_id}"))
    _row("kill -9 the trainer", tally, 0 if found is not None else 1)
    assert found is not None and found.json()["status"] in {"validating_files", "queued", "running", "succeeded"}
    assert not tally.bad, tally.bad[:5]

    # 4. the gateway killed during writes: refused connections while it is down, no acknowledged write lost
    tally, before = Tally(), len(acked_store_files)
    gateway_port = int(stack.url.rsplit(":", 1)[1])
    gateway_killed = asyncio.Event()

    async def writer(offset: int) -> None:
        i = 0
        while not gateway_killed.is_set() or len(acked_store_files) < before + 8:
            await write_one(tally, 1000 * offset + i)
            i += 1
            await asyncio.sleep(0.1)

    workers = [asyncio.ensure_future(writer(k)) for k in (1, 2)]
    await _wait(lambda: len(acked_store_files) >= before + 4, 300, "4 writes")
    os.kill(_listening_pid(gateway_port), signal.SIGKILL)
    gateway_killed.set()
    await asyncio.wait_for(asyncio.gather(*workers), 300)
    assert not tally.bad, tally.bad[:5]
    # the writers may have had their 8 writes before the kill: wait for the gateway to be back
    await _wait(lambda: "gateway restarted" in stack.err.read_text(), 120, "the gateway to be restarted")
    await _wait(lambda: _http_ready(stack.url), 180, "the gateway ready again")

    # nothing acknowledged is lost: every file's bytes, every vector store file, the job
    lost = 0
    for file_id, data in acked_files.items():
        content = await client.get(f"/v1/files/{file_id}/content")
        lost += content.status_code != 200 or content.content != data
    for file_id in acked_store_files:
        reply = await client.get(f"/v1/vector_stores/{store}/files/{file_id}")
        lost += reply.status_code != 200 or reply.json().get("status") != "completed"
    _row("kill -9 the gateway", tally, lost)
    print("\nfault | requests | failed | lost | failures")
    for fault, row in MATRIX.items():
        print(f"{fault} | {row['requests']} | {row['failed']} | {row['lost']} | {row['failures']}")
    (tmp_path / "fault-matrix.json").write_text(json.dumps(MATRIX, indent=2))
    assert lost == 0
    assert (await client.get(f"/v1/fine_tuning/jobs/{job_id}")).status_code == 200
