"""gateway_overhead: what the gateway adds to a RAG chat completion.

Measured: ``POST /v1/chat/completions`` (non-streamed, ``rag`` over one vector store, top_k 3,
greedy, ``--gw-max-tokens`` 8) on the gateway process, over a keep-alive HTTP connection.
Baseline, same run, same requests: the direct gRPC calls the gateway makes, timed end to end from
this process: ``RetrieverService.Search`` then ``GeneratorService.GenerateUnary`` with the grounded
prompt built by the gateway's own code.

Caches: the second request of a query would hit the retriever's query-embedding cache and vLLM's
prefix cache, so whichever side went second would win. Every query is therefore first sent on both
paths, untimed; the timed pairs then meet warm caches on both sides. Within a pair the order still
flips (gateway first on even pairs), and the result keeps the differences by order, so a residual
order effect shows instead of averaging away. Overhead of a pair = gateway latency - direct latency.
Reported: the distribution of the ``--gw-requests`` (40) paired differences (p10/p25/p50/p75/p90),
their mean with a 95% bootstrap interval, and the median of each order. Target: p50 <= 10 ms.
"""

from __future__ import annotations

import argparse
import time

import httpx

from bench.common import Context, percentile, report, sync_channel, write_result
from bench.gateway_common import Stack, stack
from bench.generator_common import _TOPICS
from bench.stats import paired_summary
from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune.generator.v1 import generator_pb2_grpc
from ragtune.retriever.v1 import retriever_pb2 as rpb
from ragtune.retriever.v1 import retriever_pb2_grpc
from ragtune_gateway.services.chat import grounded_messages, select_passages

NAME = "gateway_overhead"
TARGET_MS = 10.0
TOP_K = 3
CONTEXT_CHARS = 6000  # the gateway's default rag_max_context_chars


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--gw-requests", type=int, default=40, help="measured RAG requests per side")
    group.add_argument("--gw-max-tokens", type=int, default=8)


def _direct(
    s: Stack,
    search: retriever_pb2_grpc.RetrieverServiceStub,
    gen: generator_pb2_grpc.GeneratorServiceStub,
    query: str,
    max_tokens: int,
) -> tuple[float, int]:
    start = time.perf_counter()
    hits = search.Search(
        rpb.SearchRequest(
            tenant=s.tenant, collections=[s.store_id], query=query, top_k=TOP_K, mode=rpb.SEARCH_MODE_HYBRID
        ),
        timeout=60,
    ).hits
    messages = grounded_messages(
        [gpb.ChatMessage(role="user", content=query)], select_passages(list(hits), CONTEXT_CHARS, None)
    )
    done = gen.GenerateUnary(
        gpb.GenerateRequest(messages=messages, sampling=gpb.SamplingParams(temperature=0, max_tokens=max_tokens)),
        timeout=600,
    )
    return time.perf_counter() - start, done.usage.completion_tokens


def _gateway(s: Stack, http: httpx.Client, query: str, max_tokens: int) -> tuple[float, int]:
    body = {
        "model": s.base_model,
        "messages": [{"role": "user", "content": query}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "rag": {"vector_store_ids": [s.store_id], "top_k": TOP_K},
    }
    start = time.perf_counter()
    response = http.post("/v1/chat/completions", json=body)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed, int(response.json()["usage"]["completion_tokens"])


def run(ctx: Context, args: argparse.Namespace) -> bool:
    with stack(ctx) as s, sync_channel(s.retriever) as rch, sync_channel(s.generator) as gch:
        search, gen = retriever_pb2_grpc.RetrieverServiceStub(rch), generator_pb2_grpc.GeneratorServiceStub(gch)
        with httpx.Client(base_url=s.gateway, headers={"Authorization": f"Bearer {s.key}"}, timeout=600) as http:
            queries = [f"What do the notes say about {_TOPICS[i % len(_TOPICS)]}?" for i in range(args.gw_requests)]
            for query in dict.fromkeys(queries):  # untimed: both caches warm for every query on both paths
                _gateway(s, http, query, args.gw_max_tokens)
                _direct(s, search, gen, query, args.gw_max_tokens)
            overheads, direct_ms, gateway_ms, mismatched = [], [], [], 0
            by_order: dict[str, list[float]] = {"gateway_first": [], "direct_first": []}
            for i, query in enumerate(queries):
                if i % 2:
                    d, dt = _direct(s, search, gen, query, args.gw_max_tokens)
                    g, gt = _gateway(s, http, query, args.gw_max_tokens)
                else:
                    g, gt = _gateway(s, http, query, args.gw_max_tokens)
                    d, dt = _direct(s, search, gen, query, args.gw_max_tokens)
                mismatched += dt != gt
                overheads.append((g - d) * 1000)
                by_order["direct_first" if i % 2 else "gateway_first"].append((g - d) * 1000)
                direct_ms.append(d * 1000)
                gateway_ms.append(g * 1000)
    summary = paired_summary(overheads)
    p50 = summary["p50"]
    passed = p50 <= TARGET_MS
    baseline = {"what": "direct gRPC Search + GenerateUnary, same requests", "p50_ms": percentile(direct_ms, 50)}
    order_p50 = {k: percentile(v, 50) for k, v in by_order.items()}
    write_result(
        NAME,
        "gateway RAG chat completion overhead: p50 of the paired differences (ms), caches warmed on both paths",
        baseline,
        p50,
        percentile(gateway_ms, 50) / percentile(direct_ms, 50),
        f"p50 overhead <= {TARGET_MS} ms",
        passed,
        overhead_ms=summary,
        overhead_p50_by_order_ms=order_p50,
        overheads_ms=[round(x, 2) for x in overheads],
        gateway_p50_ms=percentile(gateway_ms, 50),
        requests=len(overheads),
        distinct_queries=len(set(queries)),
        token_count_mismatches=mismatched,
    )
    low, high = summary["mean_ci95"]
    report(
        NAME,
        f"overhead of {len(overheads)} pairs: p10 {summary['p10']:.1f} / p25 {summary['p25']:.1f} / p50 {p50:.1f} /"
        f" p75 {summary['p75']:.1f} / p90 {summary['p90']:.1f} ms, mean {summary['mean']:.1f} ms (95% CI"
        f" {low:.1f} .. {high:.1f}); p50 gateway-first {order_p50['gateway_first']:.1f}, direct-first"
        f" {order_p50['direct_first']:.1f} ms (gateway p50 {percentile(gateway_ms, 50):.1f} ms vs direct"
        f" {percentile(direct_ms, 50):.1f} ms; target p50 <= {TARGET_MS} ms)",
        passed,
    )
    return passed
