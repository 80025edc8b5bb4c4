"""The stack the gateway benchmarks measure: retriever and generator as separate processes (as in
the other benchmarks), and the gateway as its own uvicorn process in front of them, with a tenant,
its key, and a small vector store built through the REST API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx

from bench.common import REPO, Context, _free_port, service_process
from bench.generator_common import _TOPICS

RETRIEVER = "ragtune.retriever.v1.RetrieverService"
GENERATOR = "ragtune.generator.v1.GeneratorService"
ADMIN_KEY = "bench-admin-key-0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Stack:
    retriever: str
    generator: str
    gateway: str
    tenant: str
    key: str
    store_id: str
    base_model: str


def documents() -> list[tuple[str, str]]:
    return [
        (f"{i:02d}-{topic.replace(' ', '-')}.txt", f"Notes on {topic}. " + f"This note explains {topic} in brief. " * 6)
        for i, topic in enumerate(_TOPICS)
    ]


@contextmanager
def gateway_process(env: dict[str, str], log_path: object) -> Iterator[str]:
    port = _free_port()
    with open(str(log_path), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ragtune_gateway.main"],
            env={**env, "RAGTUNE_GATEWAY_PORT": str(port)},
            stdout=log,
            stderr=log,
            cwd=REPO,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {proc.returncode}; see {log_path}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway not up; see {log_path}")
            time.sleep(0.3)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def stack(ctx: Context) -> Iterator[Stack]:
    logs = ctx.state_dir / "logs"
    env = {**os.environ, "DATABASE_URL": ctx.database_url, "RAGTUNE_STATE_DIR": str(ctx.state_dir)}
    with ExitStack() as stack_:
        retriever = stack_.enter_context(
            service_process(
                "ragtune_retriever.main", RETRIEVER, "RAGTUNE_RETRIEVER_PORT", env, logs / "gateway-retriever.log"
            )
        )
        generator = stack_.enter_context(
            service_process(
                "ragtune_generator.main", GENERATOR, "RAGTUNE_GENERATOR_PORT", env, logs / "gateway-generator.log"
            )
        )
        gateway_env = {
            **env,
            "RAGTUNE_GATEWAY_ADMIN_KEY": ADMIN_KEY,
            "RAGTUNE_GATEWAY_RETRIEVER_ADDRESS": retriever,
            "RAGTUNE_GATEWAY_GENERATOR_ADDRESS": generator,
            "RAGTUNE_GATEWAY_TRAINER_ADDRESS": "127.0.0.1:9",
            # 32 streaming clients share one key: the per-key stream cap (8) would refuse most of them, and
            # the direct gRPC side has no such cap. The rate limiter stays on: it is part of the path.
            "RAGTUNE_GATEWAY_MAX_STREAMS_PER_KEY": "0",
        }
        url = stack_.enter_context(gateway_process(gateway_env, logs / "gateway.log"))
        yield _populate(url, retriever, generator)


def new_tenant(url: str, name: str) -> tuple[str, str]:
    """A fresh tenant (id ``<name>-<random>``) and an API key of it, made with the admin key: (id, key)."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=url, headers=admin, timeout=60) as http:
        created = http.post("/v1/admin/tenants", json={"name": name, "id": f"{name}-{uuid.uuid4().hex[:8]}"})
        created.raise_for_status()
        tenant = str(created.json()["id"])
        key = http.post(f"/v1/admin/tenants/{tenant}/keys")
        key.raise_for_status()
    return tenant, str(key.json()["key"])


def _populate(url: str, retriever: str, generator: str) -> Stack:
    """A fresh tenant with a key and a vector store of small notes, all through REST."""
    tenant, key = new_tenant(url, "bench")
    with httpx.Client(base_url=url, timeout=600) as http:
        auth = {"Authorization": f"Bearer {key}"}
        file_ids = [
            http.post(
                "/v1/files", files={"file": (name, text.encode())}, data={"purpose": "assistants"}, headers=auth
            ).json()["id"]
            for name, text in documents()
        ]
        store = http.post("/v1/vector_stores", json={"name": "bench", "file_ids": file_ids}, headers=auth)
        store.raise_for_status()
        models = http.get("/v1/models", headers=auth).json()["data"]
    base = next(m["id"] for m in models if not m.get("parent"))
    return Stack(retriever, generator, url, tenant, key, store.json()["id"], base)
