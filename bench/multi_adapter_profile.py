"""Where the milliseconds of a mixed-adapter batch go: vLLM (CPU) in this process, instrumented.

Not one of ``python -m bench``'s benchmarks: run ``python -m bench.multi_adapter_profile``. It
starts vLLM's offline ``LLM`` with the generator's engine settings (float32, eager, LoRA on,
max_loras 4, max_lora_rank 16, 1 GiB KV cache) and ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` so the
model runs in this process, wraps the functions of one engine step with wall-clock timers
(exclusive time: a wrapped callee's time is not counted in its caller), and runs the workload of
generator_multi_adapter (16 prompts, max_tokens 64, temperature 0.8, seeded) once on the base
model and spread over 4 adapters (request i on adapter i mod 4), ``--rounds`` times each, kinds
alternating: ``base``; ``lora_vllm_loop``: vLLM's ``PunicaWrapperCPU`` per-slice loop over the
generator plugin's grouped per-op ops (``ragtune_generator.lora_cpu``, what shipped before);
``lora_wrapper``: the plugin's layer-level ``add_lora_linear`` (one engine, swapped in place).
Steps with more scheduled tokens than requests are prefill steps, the others decode.
Writes ``bench/results/generator_multi_adapter_profile<--tag>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

RESULTS = Path(__file__).parent / "results"

_stack: list[list[float]] = []  # per active timer: [start, child time]
_acc: dict[str, float] = defaultdict(float)


def _timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        frame = [time.perf_counter(), 0.0]
        _stack.append(frame)
        try:
            return fn(*args, **kwargs)
        finally:
            _stack.pop()
            total = time.perf_counter() - frame[0]
            _acc[label] += total - frame[1]
            if _stack:
                _stack[-1][1] += total

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def _instrument() -> None:
    from vllm.lora.layers.base_linear import BaseLinearLayerWithLoRA
    from vllm.model_executor.layers.attention.attention import Attention
    from vllm.model_executor.models import llama
    from vllm.v1.sample.sampler import Sampler
    from vllm.v1.worker.lora_model_runner_mixin import LoRAModelRunnerMixin

    targets: list[tuple[Any, str, str]] = [
        (Attention, "forward", "attention (kernel + KV write)"),
        (llama.LlamaAttention, "forward", "attention projections (base GEMMs, rotary)"),
        (llama.LlamaMLP, "forward", "MLP (base GEMMs, SiLU)"),
        (llama.LlamaForCausalLM, "forward", "model other (embedding, norms, residuals)"),
        (llama.LlamaForCausalLM, "compute_logits", "logits (lm_head)"),
        (Sampler, "forward", "sampling"),
        (BaseLinearLayerWithLoRA, "_apply_lora_to_output", "LoRA other (buffers, dispatch)"),
        (LoRAModelRunnerMixin, "_set_active_loras", "LoRA mapping/metadata (set_active_adapters)"),
    ]
    for cls, name, label in targets:
        setattr(cls, name, _timed(label, getattr(cls, name)))


def _instrument_ops(cls: Any) -> None:
    """Time the wrapper's shrink/expand, whichever implementation is installed now."""
    for name, label in (
        ("add_lora_linear", "LoRA add_lora_linear (vLLM: buffers; ragtune: fused shrink+expand)"),
        ("add_shrink", "LoRA shrink (x @ A)"),
        ("add_expand", "LoRA expand (. @ B)"),
    ):
        fn = getattr(cls, name)
        setattr(cls, name, _timed(label, getattr(fn, "__wrapped__", fn)))


def _instrument_engine(llm: Any, steps: list[dict[str, Any]]) -> None:
    """Wrap the engine core's step: its exclusive time is scheduler + input prep + other."""
    core = llm.llm_engine.engine_core.engine_core
    runner_cls = type(core.model_executor.driver_worker.worker.model_runner)
    original_execute = runner_cls.execute_model
    tokens: list[int] = []

    def execute_model(self: Any, scheduler_output: Any, *args: Any, **kwargs: Any) -> Any:
        tokens.append(int(scheduler_output.total_num_scheduled_tokens))
        tokens.append(len(scheduler_output.num_scheduled_tokens))
        return original_execute(self, scheduler_output, *args, **kwargs)

    runner_cls.execute_model = execute_model
    original_step = core.step

    def step() -> Any:
        _acc.clear()
        tokens.clear()
        start = time.perf_counter()
        timed = _timed("scheduler, input prep, output processing", original_step)
        result = timed()
        wall = time.perf_counter() - start
        if tokens:
            steps.append({"wall": wall, "tokens": tokens[0], "reqs": tokens[1], "parts": dict(_acc)})
        return result

    core.step = step
    core.step_fn = step  # what the in-process client calls


def _summarize(steps: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for phase, chosen in (
        ("decode", [s for s in steps if s["tokens"] == s["reqs"]]),
        ("prefill", [s for s in steps if s["tokens"] > s["reqs"]]),
    ):
        if not chosen:
            continue
        labels = sorted({k for s in chosen for k in s["parts"]})
        parts = {k: round(1000 * statistics.fmean(s["parts"].get(k, 0.0) for s in chosen), 3) for k in labels}
        out[phase] = {
            "steps": len(chosen),
            "mean_tokens": round(statistics.fmean(s["tokens"] for s in chosen), 1),
            "ms_per_step": round(1000 * statistics.fmean(s["wall"] for s in chosen), 3),
            "ms_per_step_by_component": parts,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=".ragtune/bench/models/SmolLM2-135M-Instruct")
    parser.add_argument("--adapters", default=".ragtune/bench/bench-adapters")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-lora-rank", type=int, default=16)
    parser.add_argument("--target-modules", default="", help="vLLM lora_target_modules, comma-separated")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    from vllm import LLM, SamplingParams
    from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU
    from vllm.lora.request import LoRARequest

    from bench.generator_common import prompts, warmup_prompts
    from ragtune_generator import lora_cpu

    vllm_ops = {name: getattr(PunicaWrapperCPU, name) for name in ("add_lora_linear", "add_shrink", "add_expand")}
    _instrument()
    llm = LLM(
        model=args.model,
        dtype="float32",
        enforce_eager=True,
        kv_cache_memory_bytes=2**30,
        max_model_len=2048,
        max_num_seqs=32,
        enable_lora=True,
        max_loras=4,
        max_cpu_loras=16,
        max_lora_rank=args.max_lora_rank,
        lora_target_modules=[m for m in args.target_modules.split(",") if m] or None,
        disable_log_stats=True,
    )
    steps: list[dict[str, Any]] = []
    _instrument_engine(llm, steps)
    from ragtune_generator.prompts import PromptRenderer

    renderer = PromptRenderer(Path(args.model))
    paths = sorted(Path(args.adapters).glob("lora-r8-*"))[:4]
    loras = [LoRARequest(f"a{i}", i + 1, str(p)) for i, p in enumerate(paths)]

    def run(chats: list[Any], with_loras: bool, max_tokens: int = 64) -> tuple[float, int, list[str]]:
        ids = [renderer.chat(c) for c in chats]
        ins: Any = [{"prompt_token_ids": list(i)} for i in ids]
        params = [SamplingParams(temperature=0.8, max_tokens=max_tokens, seed=100 + i) for i in range(len(ids))]
        requests = [loras[i % len(loras)] for i in range(len(ids))] if with_loras else None
        start = time.perf_counter()
        outs = llm.generate(ins, params, lora_request=requests, use_tqdm=False)
        wall = time.perf_counter() - start
        return wall, sum(len(o.outputs[0].token_ids) for o in outs), [o.outputs[0].text for o in outs]

    ours = {name: getattr(lora_cpu, name) for name in vllm_ops}

    def use(kind: str) -> bool:
        """Select the LoRA path for ``kind``; returns whether the kind runs through adapters."""
        for name in vllm_ops:
            setattr(PunicaWrapperCPU, name, (ours if kind == "lora_wrapper" else vllm_ops)[name])
        _instrument_ops(PunicaWrapperCPU)
        return kind != "base"

    kinds = ("base", "lora_vllm_loop", "lora_wrapper")
    for kind in kinds:
        run(warmup_prompts(4), use(kind), max_tokens=8)
    result: dict[str, Any] = {"rounds": []}
    by_kind: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    texts: dict[str, list[str]] = {}
    for r in range(args.rounds):
        for kind in kinds if r % 2 == 0 else kinds[::-1]:
            with_loras = use(kind)
            steps.clear()
            wall, tokens, texts[kind] = run(prompts(16), with_loras)
            by_kind[kind].extend(steps)
            result["rounds"].append({"kind": kind, "wall_s": round(wall, 3), "tok_s": round(tokens / wall, 2)})
            print(result["rounds"][-1], flush=True)
    for kind, kind_steps in by_kind.items():
        result[kind] = _summarize(kind_steps)
    tok = {k: statistics.median(x["tok_s"] for x in result["rounds"] if x["kind"] == k) for k in kinds}
    result["median_tok_s"] = tok
    result["ratio_vs_base"] = {k: round(tok[k] / tok["base"], 4) for k in kinds[1:]}
    result["outputs_changed_by_adapters"] = {
        k: sum(a != b for a, b in zip(texts[k], texts["base"], strict=True)) for k in kinds[1:]
    }
    result["same_outputs_both_lora_paths"] = texts["lora_vllm_loop"] == texts["lora_wrapper"]
    result["config"] = {
        "max_lora_rank": args.max_lora_rank,
        "target_modules": args.target_modules or "all",
        "rounds": args.rounds,
        "loadavg_1m": os.getloadavg()[0],
    }
    suffix = args.tag
    out = RESULTS / f"generator_multi_adapter_profile{suffix}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
