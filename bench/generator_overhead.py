"""generator_overhead: output tokens/s of the generator through its gRPC stream vs the same
requests through vLLM's in-process API, at 1 and at ``--gen-concurrency`` (16) concurrent requests.

Measured: ``GeneratorService.Generate`` on the server started as a separate process, driven from
this process over grpc.aio. Baseline, same run: ``ragtune_generator.engine.Engine`` (the service's
own wrapper of vLLM ``AsyncLLM``, hence the same engine args) started in this process and called
with the same prompts, sampling (temperature 0.8, a seed per request, ``--gen-max-tokens`` 64) and
token counting. The proto has no ignore_eos: prompts ask for long essays and tokens/s counts the
completion tokens actually produced (both sides report their mean per request). Throughput of a
round = its completion tokens / its wall time; the figure per side is the median over all rounds
of all phases (see generator_suite for the phase order). Target: ratio >= 0.9 at 16 concurrent.
"""

from __future__ import annotations

import argparse

from bench import generator_suite
from bench.common import Context, report, write_result

NAME = generator_suite.OVERHEAD
TARGET = 0.9


def add_arguments(group: argparse._ArgumentGroup) -> None:
    generator_suite.add_arguments(group)  # the options of all three generator benchmarks


def _pair_ratios(phases: list[dict[str, object]], key: str) -> list[float]:
    by_pair: dict[object, dict[object, float]] = {}
    for phase in phases:
        if key in phase:
            by_pair.setdefault(phase["pair"], {})[phase["side"]] = float(phase[key])  # type: ignore[arg-type]
    return [round(p["grpc"] / p["in-process"], 4) for p in by_pair.values() if len(p) == 2]


def run(ctx: Context, args: argparse.Namespace) -> bool:
    samples = generator_suite.measure(ctx, args)
    v = samples.values
    n = args.gen_concurrency
    grpc_c, local_c = samples.median("grpc.conc"), samples.median("in-process.conc")
    grpc_1, local_1 = samples.median("grpc.single"), samples.median("in-process.single")
    ratio, ratio_1 = grpc_c / local_c, grpc_1 / local_1
    passed = ratio >= TARGET
    tokens = {
        side: round(sum(v[f"{side}.mean_tokens_conc"]) / len(v[f"{side}.mean_tokens_conc"]), 1)
        for side in ("grpc", "in-process")
    }
    report(
        NAME,
        f"{n} concurrent: grpc {grpc_c:.1f} tok/s vs in-process {local_c:.1f} tok/s -> ratio {ratio:.3f}"
        f" (target >= {TARGET}; best {max(v['grpc.conc']):.1f} vs {max(v['in-process.conc']):.1f};"
        f" mean completion tokens {tokens['grpc']} vs {tokens['in-process']})",
        passed,
    )
    print(
        f"{NAME}: 1 at a time: grpc {grpc_1:.1f} tok/s vs in-process {local_1:.1f} tok/s -> ratio {ratio_1:.3f}"
        " (no target)",
        flush=True,
    )
    write_result(
        NAME,
        measured=f"output tokens/s through GeneratorService.Generate (server process, grpc.aio client), {n} "
        f"concurrent requests, max_tokens {args.gen_max_tokens}, temperature 0.8, seeded; median over rounds",
        baseline={
            "what": "same requests via ragtune_generator.engine.Engine (vLLM AsyncLLM in the bench process, "
            "same engine args), prompt rendered with the same chat template",
            "value": round(local_c, 2),
        },
        value=round(grpc_c, 2),
        ratio=round(ratio, 4),
        target=f"ratio >= {TARGET} at {n} concurrent",
        passed=passed,
        concurrent={
            "requests": n,
            "grpc_tok_s": [round(x, 2) for x in v["grpc.conc"]],
            "in_process_tok_s": [round(x, 2) for x in v["in-process.conc"]],
            "best_ratio": round(max(v["grpc.conc"]) / max(v["in-process.conc"]), 4),
            "ratio_per_pair": _pair_ratios(samples.phases, "median_conc"),
            "mean_completion_tokens": tokens,
        },
        single={
            "grpc_tok_s": round(grpc_1, 2),
            "in_process_tok_s": round(local_1, 2),
            "ratio": round(ratio_1, 4),
            "ratio_per_pair": _pair_ratios(samples.phases, "median_single"),
            "samples": len(v["grpc.single"]),
        },
        phases=samples.phases,
        notes=samples.notes,
    )
    return passed
