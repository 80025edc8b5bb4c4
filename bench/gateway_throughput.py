"""gateway_throughput: completion tokens/s of ``--gw-clients`` (32) concurrent streaming chat
clients through the gateway vs the same requests straight to the generator's gRPC stream.

Measured: 32 concurrent ``POST /v1/chat/completions`` with ``stream: true`` (SSE, usage from the
``include_usage`` chunk) on the gateway process, one keep-alive connection each. Baseline, same
run: 32 concurrent ``GeneratorService.Generate`` streams over grpc.aio from this process, same
prompts (long essays), sampling (temperature 0.8, a seed per request, ``--gw-stream-tokens`` 32).
Throughput of a round = completion tokens / wall. ``--gw-rounds`` (6) rounds, each one direct and
one gateway batch of the same prompts, the order flipping every round (direct first on even
rounds), so drift and any warm-cache advantage of going second fall on both sides equally. The
figure per side is its median batch; the ratio of each round and their median are kept too.
Target: ratio >= 0.9.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import httpx

from bench.common import Context, aio_channel, report, write_result
from bench.gateway_common import Stack, stack
from bench.generator_common import TEMPERATURE, prompts
from ragtune.generator.v1 import generator_pb2 as gpb
from ragtune.generator.v1 import generator_pb2_grpc

NAME = "gateway_throughput"
TARGET = 0.9


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--gw-clients", type=int, default=32)
    group.add_argument("--gw-rounds", type=int, default=6, help="rounds, order alternating (at least 2)")
    group.add_argument("--gw-stream-tokens", type=int, default=32)


async def _direct(
    stub: generator_pb2_grpc.GeneratorServiceStub, messages: list[dict[str, str]], seed: int, max_tokens: int
) -> int:
    request = gpb.GenerateRequest(
        messages=[gpb.ChatMessage(**m) for m in messages],
        sampling=gpb.SamplingParams(temperature=TEMPERATURE, max_tokens=max_tokens, seed=seed),
    )
    tokens = 0
    async for event in stub.Generate(request, timeout=600):
        if event.HasField("final"):
            tokens = event.final.usage.completion_tokens
    return tokens


async def _gateway(
    http: httpx.AsyncClient, s: Stack, messages: list[dict[str, str]], seed: int, max_tokens: int
) -> int:
    body = {
        "model": s.base_model,
        "messages": messages,
        "temperature": TEMPERATURE,
        "seed": seed,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    tokens = 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage")
                if usage:
                    tokens = usage["completion_tokens"]
    return tokens


async def _measure(s: Stack, args: argparse.Namespace) -> dict[str, list[float]]:
    n, max_tokens = args.gw_clients, args.gw_stream_tokens
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    rates: dict[str, list[float]] = {"direct": [], "gateway": []}
    async with (
        aio_channel(s.generator) as channel,
        httpx.AsyncClient(
            base_url=s.gateway, headers={"Authorization": f"Bearer {s.key}"}, timeout=600, limits=limits
        ) as http,
    ):
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        await asyncio.gather(*(_gateway(http, s, m, i, 4) for i, m in enumerate(prompts(n))))  # warm both paths
        await asyncio.gather(*(_direct(stub, m, i, 4) for i, m in enumerate(prompts(n))))
        for r in range(max(2, args.gw_rounds)):
            for side in ("direct", "gateway") if r % 2 == 0 else ("gateway", "direct"):
                batch = prompts(n, offset=r * n)
                start = time.perf_counter()
                if side == "direct":
                    tokens = await asyncio.gather(*(_direct(stub, m, i, max_tokens) for i, m in enumerate(batch)))
                else:
                    tokens = await asyncio.gather(*(_gateway(http, s, m, i, max_tokens) for i, m in enumerate(batch)))
                rate = sum(tokens) / (time.perf_counter() - start)
                rates[side].append(rate)
                print(f"  round {r + 1} {side}: {sum(tokens)} tokens, {rate:.1f} tok/s", flush=True)
    return rates


def run(ctx: Context, args: argparse.Namespace) -> bool:
    with stack(ctx) as s:
        rates = asyncio.run(_measure(s, args))
    direct, gateway = statistics.median(rates["direct"]), statistics.median(rates["gateway"])
    ratio = gateway / direct
    round_ratios = [g / d for g, d in zip(rates["gateway"], rates["direct"], strict=True)]
    passed = ratio >= TARGET
    write_result(
        NAME,
        f"{args.gw_clients} concurrent streaming chat clients through the gateway (tok/s)",
        {"what": "the same requests straight to GeneratorService.Generate", "tok_per_s": direct},
        gateway,
        ratio,
        f"ratio >= {TARGET}",
        passed,
        rounds=rates,
        round_order=["direct first" if r % 2 == 0 else "gateway first" for r in range(len(round_ratios))],
        round_ratios=[round(x, 4) for x in round_ratios],
        median_round_ratio=round(statistics.median(round_ratios), 4),
    )
    report(
        NAME,
        f"{args.gw_clients} streaming clients: gateway {gateway:.1f} tok/s vs direct gRPC {direct:.1f} tok/s"
        f" -> ratio {ratio:.3f} (median of {len(round_ratios)} per-round ratios"
        f" {statistics.median(round_ratios):.3f}; target >= {TARGET})",
        passed,
    )
    return passed
