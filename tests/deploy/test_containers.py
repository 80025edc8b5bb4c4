"""The stack in containers, driven from outside as a user drives it (opt-in: ``make test-containers``).

``docker compose --profile cpu up`` is run as deploy/podman/compose.sh runs it on the project's machines
(podman-compose, podman, local base images; every service non-root on a read-only root filesystem).
The official ``openai`` client then ingests a file, asks a RAG question and gets citations, fine-tunes
the base model on a few lines and gets an answer from the adapter. Then the kill matrix: under a load of
uploads, vector-store adds, searches and chats, each service's container is killed with SIGKILL (its
main process, from the host, as a crash would) and brought back by its restart policy, and PostgreSQL
is restarted with ``compose restart postgres``. For each fault: every request gets a 2xx or a retryable
answer (503 with Retry-After; a refused connection while the gateway itself is down), never another
error; and nothing a 2xx acknowledged is lost (each file's bytes, each vector-store file, the jobs).
The transcript and the matrix are printed (``pytest -s``) and written to RAGTUNE_CONTAINERS_REPORT
(default /tmp/ragtune-containers-report.json).

Needs podman (make test-containers installs it as root) and builds the images it lacks: about half an
hour on two cores the first time, minutes afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.deploy.podman import podman_environment

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "podman" / "compose.sh"
REPORT = Path(os.environ.get("RAGTUNE_CONTAINERS_REPORT", "/tmp/ragtune-containers-report.json"))
BASE_MODEL = "SmolLM2-135M-Instruct"
HANDBOOK = (
    "Travel policy. Employees book economy class for flights shorter than six hours.\n\n"
    "Leave policy. Every employee gets 27 days of paid leave per calendar year, and unused days expire in March.\n\n"
    "Equipment. New staff receive a laptop on their first day; the IT desk is in room 4.12.\n"
)
TRAINING = "".join(
    json.dumps({"messages": [{"role": "user", "content": f"Colour of {thing}?"}, {"role": "assistant", "content": c}]})
    + "\n"
    for thing, c in [("grass", "GREEN!"), ("sky", "BLUE!"), ("snow", "WHITE!"), ("coal", "BLACK!")] * 3
)

pytestmark = pytest.mark.skipif(
    os.environ.get("RAGTUNE_TEST_CONTAINERS") != "1",
    reason="the container stack builds images for many minutes: make test-containers runs it",
)

TRANSCRIPT: list[str] = []
MATRIX: dict[str, dict[str, Any]] = {}
STARTED = time.monotonic()


def say(line: str) -> None:
    entry = f"[{time.monotonic() - STARTED:7.1f}s] {line}"
    TRANSCRIPT.append(entry)
    print(entry, flush=True)


def write_report() -> None:
    REPORT.write_text(json.dumps({"transcript": TRANSCRIPT, "matrix": MATRIX}, indent=2))


@dataclass
class Stack:
    url: str
    env: dict[str, str]

    def compose(self, *args: str, timeout_s: float = 1800) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(COMPOSE), *args], env=self.env, text=True, capture_output=True, timeout=timeout_s)

    def container(self, service: str) -> str:
        out = subprocess.run(
            [
                "podman",
                "ps",
                "-a",
                "--filter",
                "label=com.docker.compose.project=ragtune",
                "--filter",
                f"label=com.docker.compose.service={service}",
                "--format",
                "{{.Names}}",
            ],
            env=self.env,
            text=True,
            capture_output=True,
            check=True,
        )
        return out.stdout.split()[0]

    def inspect(self, service: str, template: str) -> str:
        command = ["podman", "inspect", "--format", template, self.container(service)]
        return subprocess.run(command, env=self.env, text=True, capture_output=True, check=True).stdout.strip()

    def healthy(self, service: str, timeout_s: float) -> float:
        """Waits until the service's health check passes; returns the seconds it took."""
        start = time.monotonic()
        result = self.compose("health", service, str(int(timeout_s)), timeout_s=timeout_s + 60)
        assert result.returncode == 0, f"{service} not healthy: {result.stdout}{result.stderr}"
        return time.monotonic() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    env = podman_environment()
    env.update(
        POSTGRES_PASSWORD=secrets.token_hex(16),
        RAGTUNE_ADMIN_KEY=secrets.token_hex(24),
        RAGTUNE_SERVICE_TOKEN=secrets.token_hex(24),
        GATEWAY_PORT=str(_free_port()),
        RAGTUNE_COMPOSE_PROFILE="cpu",
    )
    stack = Stack(url=f"http://127.0.0.1:{env['GATEWAY_PORT']}", env=env)
    stack.compose("down", timeout_s=300)  # what an interrupted earlier run left
    start = time.monotonic()
    up = subprocess.run([str(COMPOSE), "up", "cpu"], env=env, text=True, timeout=5400)
    assert up.returncode == 0, "compose up failed (its output is above)"
    say(f"compose --profile cpu up: every service healthy after {time.monotonic() - start:.0f}s")
    try:
        yield stack
    finally:
        write_report()
        if os.environ.get("RAGTUNE_KEEP_STACK") != "1":
            stack.compose("down", timeout_s=300)


@pytest.fixture(scope="module")
def tenant_key(stack: Stack) -> str:
    admin = {"Authorization": f"Bearer {stack.env['RAGTUNE_ADMIN_KEY']}"}
    tenant = httpx.post(f"{stack.url}/v1/admin/tenants", json={"name": "containers"}, headers=admin, timeout=30)
    assert tenant.status_code == 200, tenant.text
    key = httpx.post(f"{stack.url}/v1/admin/tenants/{tenant.json()['id']}/keys", headers=admin, timeout=30)
    assert key.status_code == 200, key.text
    return str(key.json()["key"])


def test_every_service_runs_non_root_on_a_read_only_root(stack: Stack) -> None:
    for service in ("retriever", "generator-cpu", "trainer", "gateway"):
        assert stack.inspect(service, "{{.HostConfig.ReadonlyRootfs}}") == "true", service
        name = stack.container(service)
        whoami = subprocess.run(["podman", "exec", name, "id", "-u"], env=stack.env, capture_output=True, text=True)
        assert whoami.stdout.strip() == "10001", service
        denied = subprocess.run(["podman", "exec", name, "touch", "/opt/venv/x"], env=stack.env, capture_output=True)
        assert denied.returncode != 0, f"{service}: the root filesystem is writable"
        for path in ("/tmp", "/home/ragtune", "/var/lib/ragtune"):
            probe = f"{path}/.write-probe"
            wrote = subprocess.run(
                ["podman", "exec", name, "sh", "-c", f"echo x > {probe} && rm {probe}"], env=stack.env
            )
            assert wrote.returncode == 0, f"{service}: {path} is not writable"
    say("every service: uid 10001, read-only root filesystem, /tmp /home/ragtune /var/lib/ragtune writable")


def test_a_user_ingests_asks_fine_tunes_and_asks_the_adapter(stack: Stack, tenant_key: str) -> None:
    client = OpenAI(base_url=f"{stack.url}/v1", api_key=tenant_key, timeout=300, max_retries=0)
    uploaded = client.files.create(file=("handbook.txt", HANDBOOK.encode()), purpose="assistants")
    say(f"files.create handbook.txt -> {uploaded.id} ({uploaded.bytes} bytes)")
    store = client.vector_stores.create(name="handbook", file_ids=[uploaded.id])
    deadline = time.monotonic() + 300
    while (store := client.vector_stores.retrieve(store.id)).file_counts.completed < 1:
        assert store.file_counts.failed == 0 and time.monotonic() < deadline, store.file_counts
        time.sleep(1)
    say(f"vector_stores.create handbook -> {store.id}, file_counts.completed={store.file_counts.completed}")

    answer = client.chat.completions.create(
        model=BASE_MODEL,
        messages=[{"role": "user", "content": "How many days of paid leave does an employee get per year?"}],
        max_tokens=48,
        temperature=0,
        extra_body={"rag": {"vector_store_ids": [store.id], "top_k": 3}},
    )
    citations = answer.model_dump()["citations"]
    say(f"chat.completions.create (rag) -> {answer.choices[0].message.content!r}")
    say(f"  citations: {[(c['index'], c['text'][:60]) for c in citations]}")
    assert citations and any("27 days" in c["text"] for c in citations)

    training = client.files.create(file=("colours.jsonl", TRAINING.encode()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=training.id,
        suffix="colours",
        seed=7,
        hyperparameters={"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 10},
        extra_body={"lora": {"r": 8, "target_modules": ["q_proj", "v_proj"]}, "max_seq_length": 64},
    )
    say(f"fine_tuning.jobs.create -> {job.id} ({job.status})")
    start, deadline = time.monotonic(), time.monotonic() + 1200
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"job still {job.status}"
        time.sleep(3)
    say(f"  {job.status} after {time.monotonic() - start:.0f}s: {job.fine_tuned_model}, {job.trained_tokens} tokens")
    assert job.status == "succeeded" and job.fine_tuned_model, job.error

    deadline = time.monotonic() + 300
    while job.fine_tuned_model not in [m.id for m in client.models.list().data]:
        assert time.monotonic() < deadline, "the adapter never appeared in /v1/models"
        time.sleep(2)
    tuned = client.chat.completions.create(
        model=job.fine_tuned_model,
        messages=[{"role": "user", "content": "Colour of grass?"}],
        max_tokens=8,
        temperature=0,
    )
    say(f"chat.completions.create model={tuned.model} -> {tuned.choices[0].message.content!r}")
    assert tuned.model == job.fine_tuned_model and tuned.choices[0].message.content


@dataclass
class Tally:
    requests: int = 0
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)  # neither 2xx nor retryable

    def record(self, reply: httpx.Response | None, error: str = "") -> httpx.Response | None:
        self.requests += 1
        if reply is None:
            self.failures[error] += 1
            return None
        if reply.is_success:
            self.ok += 1
            return reply
        self.failures[str(reply.status_code)] += 1
        if reply.status_code != 503 or "retry-after" not in reply.headers:
            self.bad.append(f"{reply.request.method} {reply.request.url.path}: {reply.status_code} {reply.text[:200]}")
        return None


async def _call(tally: Tally, send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response | None:
    try:
        return tally.record(await send())
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        return tally.record(None, type(exc).__name__)  # the gateway itself is down: retryable
    except httpx.TimeoutException as exc:
        return tally.record(None, type(exc).__name__)


def _kill_main_process(stack: Stack, service: str) -> tuple[int, int]:
    """SIGKILL to the container's main process from the host, as a crash; returns (pid, restarts before)."""
    pid = int(stack.inspect(service, "{{.State.Pid}}"))
    restarts = int(stack.inspect(service, "{{.RestartCount}}"))
    assert pid > 0, f"{service} is not running"
    os.kill(pid, signal.SIGKILL)
    return pid, restarts


async def _until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(1)


def _restarted(stack: Stack, service: str, pid: int, restarts: int) -> bool:
    try:
        new_pid = int(stack.inspect(service, "{{.State.Pid}}"))
        return new_pid not in (0, pid) and int(stack.inspect(service, "{{.RestartCount}}")) > restarts
    except (subprocess.CalledProcessError, ValueError):
        return False


def test_kill_matrix(stack: Stack, tenant_key: str) -> None:
    asyncio.run(_kill_matrix(stack, tenant_key))


async def _kill_matrix(stack: Stack, key: str) -> None:
    http = httpx.AsyncClient(base_url=stack.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    store = (await http.post("/v1/vector_stores", json={"name": "kill-matrix"})).json()["id"]
    # what a 2xx acknowledged, by the fault it was acknowledged under
    acked_files: dict[str, tuple[bytes, str]] = {}
    acked_store_files: list[tuple[str, str]] = []
    acked_jobs: list[tuple[str, str]] = []
    phase = [""]

    async def write_one(tally: Tally) -> None:
        i = len(acked_files)
        text = f"Kill matrix note {uuid.uuid4().hex[:8]}: meeting room {i} has {i % 7 + 2} chairs."
        note = {"file": (f"note-{i}.txt", text.encode())}
        uploaded = await _call(tally, lambda: http.post("/v1/files", files=note, data={"purpose": "assistants"}))
        if uploaded is None:
            return
        acked_files[uploaded.json()["id"]] = (text.encode(), phase[0])
        added = await _call(
            tally, lambda: http.post(f"/v1/vector_stores/{store}/files", json={"file_id": uploaded.json()["id"]})
        )
        if added is not None:
            acked_store_files.append((uploaded.json()["id"], phase[0]))

    async def load(tally: Tally, stop: asyncio.Event, chat: bool) -> None:
        chat_body = {"model": BASE_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        while not stop.is_set():
            await write_one(tally)
            await _call(tally, lambda: http.post(f"/v1/vector_stores/{store}/search", json={"query": "chairs"}))
            if chat:
                await _call(tally, lambda: http.post("/v1/chat/completions", json=chat_body))
            await asyncio.sleep(0.2)

    async def under_load(fault: str, inflict: Callable[[], Awaitable[None]], chat: bool = False) -> None:
        tally, stop = Tally(), asyncio.Event()
        phase[0] = fault
        workers = [asyncio.ensure_future(load(tally, stop, chat)) for _ in range(2)]
        await _until(lambda: tally.ok >= 6, 300, "load before the fault")
        await inflict()
        ok_after = tally.ok
        await _until(lambda: tally.ok >= ok_after + 6, 600, f"load after: {fault}")
        stop.set()
        await asyncio.gather(*workers)
        failed = tally.requests - tally.ok
        MATRIX[fault] = {"requests": tally.requests, "failed": failed, "failures": dict(tally.failures), "lost": 0}
        say(f"{fault}: {tally.requests} requests, {failed} failed {dict(tally.failures)}")
        assert not tally.bad, tally.bad[:5]

    def kill(service: str, timeout_s: float) -> Callable[[], Awaitable[None]]:
        async def inflict() -> None:
            pid, restarts = _kill_main_process(stack, service)
            start = time.monotonic()
            say(f"kill -9 {service} (pid {pid})")
            await _until(lambda: _restarted(stack, service, pid, restarts), 120, f"{service} restarted")
            took = await asyncio.to_thread(stack.healthy, service, timeout_s)
            say(f"  {service} restarted by its policy, healthy {time.monotonic() - start:.0f}s after the kill")
            assert took >= 0

        return inflict

    async def restart_postgres() -> None:
        start, started_at = time.monotonic(), stack.inspect("postgres", "{{.State.StartedAt}}")
        say("compose restart postgres")
        result = await asyncio.to_thread(stack.compose, "restart", "postgres", timeout_s=300)
        assert result.returncode == 0, result.stderr
        await asyncio.to_thread(stack.healthy, "postgres", 120)
        assert stack.inspect("postgres", "{{.State.StartedAt}}") != started_at, "postgres was not restarted"
        say(f"  postgres stopped and started again, healthy {time.monotonic() - start:.0f}s after the command")

    training = await http.post(
        "/v1/files", files={"file": ("kill.jsonl", TRAINING.encode())}, data={"purpose": "fine-tune"}
    )
    assert training.status_code == 200, training.text

    await under_load("kill -9 retriever", kill("retriever", 300))
    await under_load("kill -9 generator-cpu", kill("generator-cpu", 900), chat=True)

    async def job_then_kill_trainer() -> None:
        job = await http.post(
            "/v1/fine_tuning/jobs",
            json={"model": BASE_MODEL, "training_file": training.json()["id"], "hyperparameters": {"n_epochs": 1}},
        )
        assert job.status_code == 200, job.text
        acked_jobs.append((job.json()["id"], phase[0]))
        await kill("trainer", 600)()

    await under_load("kill -9 trainer", job_then_kill_trainer)
    await under_load("kill -9 gateway", kill("gateway", 300))
    await under_load("compose restart postgres", restart_postgres)

    async def read(path: str) -> httpx.Response:
        """GET, waiting out the per-key rate limit (429 + Retry-After) that hundreds of reads reach."""
        for _ in range(60):
            reply = await http.get(path)
            if reply.status_code != 429:
                break
            await asyncio.sleep(float(reply.headers.get("retry-after", "1")))
        return reply

    # nothing acknowledged is lost: every file's bytes, every vector store file, every job
    for file_id, (data, fault) in acked_files.items():
        content = await read(f"/v1/files/{file_id}/content")
        MATRIX[fault]["lost"] += content.status_code != 200 or content.content != data
    for file_id, fault in acked_store_files:
        deadline = time.monotonic() + 300
        while (reply := await read(f"/v1/vector_stores/{store}/files/{file_id}")).status_code == 200:
            if reply.json().get("status") != "in_progress" or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        MATRIX[fault]["lost"] += reply.status_code != 200 or reply.json().get("status") != "completed"
    for job_id, fault in acked_jobs:
        MATRIX[fault]["lost"] += (await read(f"/v1/fine_tuning/jobs/{job_id}")).status_code != 200
    await http.aclose()
    lost = sum(row["lost"] for row in MATRIX.values())
    counts = f"{len(acked_files)} files, {len(acked_store_files)} store files, {len(acked_jobs)} jobs"
    say(f"acknowledged: {counts}; lost {lost}")
    print("\nfault | requests | failed | lost | failures")
    for fault, row in MATRIX.items():
        print(f"{fault} | {row['requests']} | {row['failed']} | {row['lost']} | {row['failures']}")
    write_report()
    assert lost == 0
