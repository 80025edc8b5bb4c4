"""generator_multi_adapter: gRPC throughput with concurrent requests spread over 4 LoRA adapters
vs the base model alone, same server, same load.

Four PEFT LoRA adapters (rank 8 on q_proj/v_proj, lora_B ~ N(0, 0.02): outputs change, text stays
sane) are created once under ``<state_dir>/bench-adapters`` and loaded with LoadAdapter. Measured:
rounds of ``--gen-concurrency`` (16) ``Generate`` calls started together, request i on adapter
i mod 4, max_tokens 64, temperature 0.8, seeded. Baseline, same run and server: the same rounds on
the base model, alternating with the adapter rounds. Figure per kind: the median of round
throughputs (completion tokens / wall). Target: ratio >= 0.8.

Second baseline: the same base-model rounds on a generator server started with LoRA off
(``RAGTUNE_GENERATOR_ENABLE_LORA=false``), server phases alternating. The first ratio (adapters vs
base on the LoRA server) hides what merely enabling LoRA costs; the second (adapters vs the no-LoRA
server) includes it. Both are reported; the target applies to the first, as before.
"""

from __future__ import annotations

import argparse

from bench import generator_suite
from bench.common import Context, report, write_result

NAME = generator_suite.MULTI
TARGET = 0.8


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """Options are shared: see generator_overhead's group."""


def run(ctx: Context, args: argparse.Namespace) -> bool:
    samples = generator_suite.measure(ctx, args)
    v = samples.values
    lora, base, nolora = samples.median("multi.lora"), samples.median("multi.base"), samples.median("multi.nolora")
    ratio = lora / base
    ratio_nolora = lora / nolora
    passed = ratio >= TARGET
    kinds = ("lora", "base", "nolora")
    mean = {k: round(sum(v[f"multi.mean_tokens_{k}"]) / len(v[f"multi.mean_tokens_{k}"]), 1) for k in kinds}
    report(
        NAME,
        f"{args.gen_concurrency} concurrent over {generator_suite.ADAPTERS} adapters {lora:.1f} tok/s vs base"
        f" {base:.1f} tok/s (LoRA server) -> ratio {ratio:.3f} (target >= {TARGET}); vs base {nolora:.1f} tok/s on"
        f" a server without LoRA -> ratio {ratio_nolora:.3f} (mean completion tokens {mean['lora']} /"
        f" {mean['base']} / {mean['nolora']})",
        passed,
    )
    write_result(
        NAME,
        measured=f"output tokens/s through Generate, {args.gen_concurrency} concurrent requests spread over "
        f"{generator_suite.ADAPTERS} LoRA adapters (r=8, q_proj/v_proj), median over rounds",
        baseline={"what": "same rounds on the base model, same server, alternating", "value": round(base, 2)},
        value=round(lora, 2),
        ratio=round(ratio, 4),
        target=f"ratio >= {TARGET}",
        passed=passed,
        baseline_without_lora={
            "what": "same base-model rounds on a generator server started with LoRA off, alternating phases",
            "value": round(nolora, 2),
            "ratio": round(ratio_nolora, 4),
            "lora_enabled_cost": round(1 - base / nolora, 4),
        },
        lora_tok_s=[round(x, 2) for x in v["multi.lora"]],
        base_tok_s=[round(x, 2) for x in v["multi.base"]],
        nolora_tok_s=[round(x, 2) for x in v["multi.nolora"]],
        mean_completion_tokens=mean,
        outputs_changed_by_adapters=[int(x) for x in v["multi.changed_outputs"]],
        phases=[p for p in samples.phases if p["side"] in ("grpc", "grpc-nolora")],
    )
    return passed
