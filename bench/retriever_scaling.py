"""retriever_scaling: search throughput through the gateway with 1 vs 2 retriever replicas.

Measured: queries per second of ``POST /v1/vector_stores/{id}/search`` (hybrid, top 10) at a fixed
concurrency (``--scaling-concurrency``, 8), the SciFact test queries (300, each once per round) over
a vector store of ``--scaling-docs`` (600) SciFact abstracts, with the retrievers' query cache off
so every search embeds its query. Two gateway processes share one database and the same two
retriever processes: one gateway is given one retriever's address, the other both
(``RAGTUNE_GATEWAY_RETRIEVER_ADDRESS=a,b``, round_robin per request). Rounds alternate between the
two (``--scaling-rounds`` each, 3); each side's figure is its median round. Baseline: 1 replica.
Also recorded: how the 2-replica side's searches split between the replicas (their metrics ports)
and the CPU seconds each process spent, which explain the ratio on a machine of few cores.
Target: ratio >= 1.0 on this 2-core machine (no loss from balancing); ~2x needs >= 2 free cores per
replica pair.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx
import psutil

from bench.common import Context, _free_port, load_scifact, percentile, report, service_process, write_result
from bench.gateway_common import ADMIN_KEY, gateway_process, new_tenant

NAME = "retriever_scaling"
RETRIEVER = "ragtune.retriever.v1.RetrieverService"
SEARCH_METHOD = "/ragtune.retriever.v1.RetrieverService/Search"
TARGET = 1.0


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--scaling-concurrency", type=int, default=8)
    group.add_argument("--scaling-rounds", type=int, default=3)
    group.add_argument("--scaling-docs", type=int, default=600)


@dataclass
class Side:
    label: str
    url: str
    qps: list[float]
    latencies_ms: list[float]


def _searches_served(metrics_port: int) -> float:
    """Search calls a retriever answered, read off its Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    prefix = "ragtune_rpc_requests_total{"
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and f'method="{SEARCH_METHOD}"' in line
    )


@contextmanager
def _retrievers(ctx: Context, env: dict[str, str]) -> Iterator[list[tuple[str, int]]]:
    """Two retriever processes, each with its metrics port: [(address, metrics port), ...]."""
    with ExitStack() as stack:
        found = []
        for label in ("a", "b"):
            metrics = _free_port()
            address = stack.enter_context(
                service_process(
                    "ragtune_retriever.main",
                    RETRIEVER,
                    "RAGTUNE_RETRIEVER_PORT",
                    {**env, "RAGTUNE_RETRIEVER_METRICS_PORT": str(metrics)},
                    ctx.state_dir / "logs" / f"scaling-retriever-{label}.log",
                )
            )
            found.append((address, metrics))
        yield found


def _populate(url: str, docs: list[tuple[str, str]]) -> tuple[str, str]:
    """A tenant, its key and a vector store of ``docs``, through REST. Returns (key, store id)."""
    _, key = new_tenant(url, "scaling")
    with httpx.Client(base_url=url, timeout=1800) as http:
        auth = {"Authorization": f"Bearer {key}"}
        store = http.post("/v1/vector_stores", json={"name": "scaling"}, headers=auth)
        store.raise_for_status()
        store_id = store.json()["id"]
        start = time.perf_counter()
        for i, (doc_id, text) in enumerate(docs):
            upload = http.post(
                "/v1/files",
                files={"file": (f"{doc_id}.txt", text.encode())},
                data={"purpose": "assistants"},
                headers=auth,
            )
            upload.raise_for_status()
            added = http.post(
                f"/v1/vector_stores/{store_id}/files", json={"file_id": upload.json()["id"]}, headers=auth
            )
            added.raise_for_status()
            if (i + 1) % 100 == 0:
                print(f"  indexed {i + 1}/{len(docs)} documents {time.perf_counter() - start:.0f}s", flush=True)
    return key, store_id


async def _round(url: str, key: str, store_id: str, queries: list[str], concurrency: int) -> tuple[float, list[float]]:
    """All queries once at ``concurrency``; returns queries per second and each search's latency
    (ms). Any failed search raises."""
    pending, latencies = list(queries), []
    async with httpx.AsyncClient(base_url=url, timeout=120, headers={"Authorization": f"Bearer {key}"}) as http:

        async def worker() -> None:
            while pending:
                query = pending.pop()
                sent = time.perf_counter()
                reply = await http.post(f"/v1/vector_stores/{store_id}/search", json={"query": query})
                reply.raise_for_status()
                latencies.append(1000 * (time.perf_counter() - sent))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(queries) / (time.perf_counter() - start), latencies


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    times = {name: psutil.Process(pid).cpu_times() for name, pid in pids.items()}
    return {name: t.user + t.system for name, t in times.items()}


def _pid_listening(port: int) -> int:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return int(conn.pid)
    raise RuntimeError(f"no process listens on {port}")


def run(ctx: Context, args: argparse.Namespace) -> bool:
    data = load_scifact(ctx.datasets / "scifact")
    docs = data.corpus[: args.scaling_docs]
    queries = [data.queries[qid] for qid in data.test_qrels if qid in data.queries]
    env = {
        **os.environ,
        "DATABASE_URL": ctx.database_url,
        "RAGTUNE_STATE_DIR": str(ctx.state_dir),
        "RAGTUNE_RETRIEVER_QUERY_CACHE_SIZE": "0",  # every search embeds its query, on either side
    }
    with ExitStack() as stack:
        replicas = stack.enter_context(_retrievers(ctx, env))
        (first, first_metrics), (second, second_metrics) = replicas
        gateway_env = {
            **env,
            "RAGTUNE_GATEWAY_ADMIN_KEY": ADMIN_KEY,
            "RAGTUNE_GATEWAY_GENERATOR_ADDRESS": "127.0.0.1:9",
        }
        gateway_env["RAGTUNE_GATEWAY_TRAINER_ADDRESS"] = "127.0.0.1:9"
        one = stack.enter_context(
            gateway_process(
                {**gateway_env, "RAGTUNE_GATEWAY_RETRIEVER_ADDRESS": first}, ctx.state_dir / "logs" / "scaling-gw1.log"
            )
        )
        two = stack.enter_context(
            gateway_process(
                {**gateway_env, "RAGTUNE_GATEWAY_RETRIEVER_ADDRESS": f"{first},{second}"},
                ctx.state_dir / "logs" / "scaling-gw2.log",
            )
        )
        print(f"  indexing {len(docs)} SciFact documents through the gateway", flush=True)
        key, store_id = _populate(one, docs)
        sides = [Side("1 replica", one, [], []), Side("2 replicas", two, [], [])]
        for side in sides:  # warm each path once (model pages, connections), untimed
            asyncio.run(_round(side.url, key, store_id, queries[:16], args.scaling_concurrency))
        pids = {
            "retriever a": _pid_listening(int(first.rsplit(":", 1)[1])),
            "retriever b": _pid_listening(int(second.rsplit(":", 1)[1])),
            "gateway 1": _pid_listening(int(one.rsplit(":", 1)[1])),
            "gateway 2": _pid_listening(int(two.rsplit(":", 1)[1])),
        }
        cpu = {side.label: dict.fromkeys(pids, 0.0) for side in sides}
        served = {side.label: [0.0, 0.0] for side in sides}
        for r in range(args.scaling_rounds):
            order = sides if r % 2 == 0 else sides[::-1]
            for side in order:
                before_cpu = _cpu_seconds(pids)
                before = [_searches_served(first_metrics), _searches_served(second_metrics)]
                qps, latencies = asyncio.run(_round(side.url, key, store_id, queries, args.scaling_concurrency))
                side.latencies_ms += latencies
                after = [_searches_served(first_metrics), _searches_served(second_metrics)]
                after_cpu = _cpu_seconds(pids)
                side.qps.append(qps)
                for name in pids:
                    cpu[side.label][name] += after_cpu[name] - before_cpu[name]
                served[side.label] = [s + (a - b) for s, a, b in zip(served[side.label], after, before, strict=True)]
                print(f"  round {r + 1} {side.label}: {qps:.1f} queries/s", flush=True)

    base, value = statistics.median(sides[0].qps), statistics.median(sides[1].qps)
    ratio = value / base
    passed = ratio >= TARGET
    split = served["2 replicas"]
    for side in sides:
        p50, p95 = percentile(side.latencies_ms, 50), percentile(side.latencies_ms, 95)
        print(
            f"{NAME}: {side.label}: median {statistics.median(side.qps):.1f} queries/s,"
            f" p50 {p50:.0f} ms, p95 {p95:.0f} ms"
        )
    report(
        NAME,
        f"search QPS at concurrency {args.scaling_concurrency}: 2 replicas {value:.1f} vs 1 replica {base:.1f}"
        f" -> ratio {ratio:.2f} (target >= {TARGET}); 2-replica searches split {split[0]:.0f}/{split[1]:.0f}",
        passed,
    )
    for label, per_process in cpu.items():
        print(
            f"{NAME}: CPU seconds over the {label} rounds: " + ", ".join(f"{k} {v:.1f}" for k, v in per_process.items())
        )
    write_result(
        NAME,
        measured=(
            f"queries/s of hybrid top-10 search through the gateway, {len(queries)} SciFact test queries per round at"
            f" concurrency {args.scaling_concurrency}, query cache off, 2 retriever replicas (round_robin)"
        ),
        baseline={
            "what": "the same rounds through a gateway given 1 of the 2 retriever replicas",
            "value": round(base, 2),
        },
        value=round(value, 2),
        ratio=round(ratio, 3),
        target=f"ratio >= {TARGET} on {os.cpu_count()} cores",
        passed=passed,
        rounds={side.label: [round(q, 2) for q in side.qps] for side in sides},
        searches_per_replica_two_replica_side=split,
        cpu_seconds=cpu,
        latency_ms={
            side.label: {
                "p50": round(percentile(side.latencies_ms, 50), 1),
                "p95": round(percentile(side.latencies_ms, 95), 1),
            }
            for side in sides
        },
        documents=len(docs),
    )
    return passed
