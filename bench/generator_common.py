"""Load drivers shared by the generator benchmarks: the same requests sent either through the
generator's gRPC stream (a separate server process) or straight to ``ragtune_generator.engine.Engine``
in the bench process, which is the service's own wrapper of vLLM's in-process ``AsyncLLM`` API
(same engine args, same ``SamplingParams``, DELTA outputs).

Both sides render the chat prompt with the model's chat template (``PromptRenderer.chat``, as the
service does) inside the timed region, and count completion tokens the way the service's
``Usage`` does (the sum of new token ids per engine step). Throughput = completion tokens / wall.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from ragtune.generator.v1 import generator_pb2 as pb
from ragtune.generator.v1 import generator_pb2_grpc
from ragtune_generator.engine import Engine, Sampling
from ragtune_generator.prompts import PromptRenderer

TEMPERATURE = 0.8
RPC_TIMEOUT_S = 600.0
ADAPTER_TENANT = "bench"
_TOPICS = (
    "the history of the printing press",
    "how volcanoes form",
    "the life cycle of stars",
    "coral reefs",
    "the invention of the telephone",
    "how bees make honey",
    "the Roman aqueducts",
    "black holes",
    "the water cycle",
    "the migration of monarch butterflies",
    "how airplanes fly",
    "the Silk Road",
    "photosynthesis",
    "the building of the pyramids",
    "ocean tides",
    "the human immune system",
    "the history of chess",
    "rainforests",
    "how glaciers shape valleys",
    "the first moon landing",
    "the invention of paper",
    "earthquakes",
    "the Great Wall of China",
    "how computers store data",
    "the history of tea",
    "desert animals",
    "the printing of newspapers",
    "how rainbows appear",
    "the Industrial Revolution",
    "lighthouses",
    "the story of the bicycle",
    "penguins in Antarctica",
    "how bridges are built",
    "the history of maps",
    "wind energy",
    "the Amazon river",
)
_WARMUP_TOPICS = ("a walk in the park", "a rainy afternoon", "an old library", "a mountain village")


def long_prompt(topic: str) -> list[dict[str, str]]:
    """A chat request that makes SmolLM2 write well past 64 tokens."""
    text = f"Write a long, detailed essay of at least five paragraphs about {topic}. Explain everything step by step."
    return [{"role": "user", "content": text}]


def prompts(count: int, offset: int = 0) -> list[list[dict[str, str]]]:
    return [long_prompt(_TOPICS[(offset + i) % len(_TOPICS)]) for i in range(count)]


def warmup_prompts(count: int) -> list[list[dict[str, str]]]:
    return [long_prompt(_WARMUP_TOPICS[i % len(_WARMUP_TOPICS)]) for i in range(count)]


@dataclass(frozen=True)
class Outcome:
    """One request: completion tokens, wall time, time to the first non-empty delta, the text."""

    tokens: int
    wall_s: float
    ttft_s: float
    text: str


@dataclass(frozen=True)
class Batch:
    """Requests started together: their outcomes and the wall time until the last finished."""

    outcomes: list[Outcome]
    wall_s: float

    @property
    def tokens(self) -> int:
        return sum(o.tokens for o in self.outcomes)

    @property
    def tok_per_s(self) -> float:
        return self.tokens / self.wall_s


class Side:
    """A way to run one request; ``batch`` starts several at once."""

    label = ""

    async def one(self, messages: list[dict[str, str]], max_tokens: int, seed: int, adapter: str = "") -> Outcome:
        raise NotImplementedError

    async def batch(
        self, requests: Sequence[list[dict[str, str]]], max_tokens: int, seed0: int, adapters: Sequence[str] = ("",)
    ) -> Batch:
        start = time.perf_counter()
        outcomes = await asyncio.gather(
            *(self.one(m, max_tokens, seed0 + i, adapters[i % len(adapters)]) for i, m in enumerate(requests))
        )
        return Batch(list(outcomes), time.perf_counter() - start)


class GrpcSide(Side):
    """``GeneratorService.Generate`` over a grpc.aio channel; tokens from the final ``Usage``."""

    label = "grpc"

    def __init__(self, stub: generator_pb2_grpc.GeneratorServiceStub) -> None:
        self.stub = stub

    async def one(self, messages: list[dict[str, str]], max_tokens: int, seed: int, adapter: str = "") -> Outcome:
        request = pb.GenerateRequest(
            messages=[pb.ChatMessage(role=m["role"], content=m["content"]) for m in messages],
            sampling=pb.SamplingParams(temperature=TEMPERATURE, max_tokens=max_tokens, seed=seed),
            adapter=adapter,
            tenant=ADAPTER_TENANT,
        )
        start = time.perf_counter()
        ttft = -1.0
        final: pb.Completion | None = None
        async for message in self.stub.Generate(request, timeout=RPC_TIMEOUT_S):
            if message.HasField("final"):
                final = message.final
            elif ttft < 0 and message.delta:
                ttft = time.perf_counter() - start
        wall = time.perf_counter() - start
        if final is None:
            raise RuntimeError("the stream ended without a final message")
        return Outcome(final.usage.completion_tokens, wall, ttft, final.text)


class InProcessSide(Side):
    """``Engine.generate`` (vLLM ``AsyncLLM`` in this process) with the service's ``Sampling``."""

    label = "in-process"

    def __init__(self, engine: Engine, renderer: PromptRenderer) -> None:
        self.engine, self.renderer = engine, renderer

    async def one(self, messages: list[dict[str, str]], max_tokens: int, seed: int, adapter: str = "") -> Outcome:
        if adapter:
            raise ValueError("the in-process side serves the base model only")
        sampling = Sampling(temperature=TEMPERATURE, top_p=1.0, max_tokens=max_tokens, stop=(), seed=seed)
        start = time.perf_counter()
        ids = self.renderer.chat(messages)
        ttft, tokens, parts = -1.0, 0, []
        async for step in self.engine.generate(f"bench-{uuid.uuid4().hex[:12]}", ids, sampling):
            tokens += step.new_tokens
            if step.delta:
                parts.append(step.delta)
                if ttft < 0:
                    ttft = time.perf_counter() - start
        return Outcome(tokens, time.perf_counter() - start, ttft, "".join(parts))


# -- LoRA adapters ----------------------------------------------------------------------------------


def make_adapters(base_model_dir: Path, folder: Path, count: int, rank: int = 8, std: float = 0.02) -> list[Path]:
    """``count`` PEFT LoRA adapters (rank ``rank`` on q_proj/v_proj, lora_B ~ N(0, std), seed i),
    created once under ``folder`` and reused (same content, so LoadAdapter stays a no-op)."""
    paths = [folder / f"lora-r{rank}-{i}" for i in range(count)]
    missing = [(i, p) for i, p in enumerate(paths) if not (p / "adapter_model.safetensors").is_file()]
    if not missing:
        return paths
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    for i, path in missing:
        model = AutoModelForCausalLM.from_pretrained(str(base_model_dir), dtype=torch.float32)
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"])
        peft_model = get_peft_model(model, config)
        generator = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * std)
        peft_model.save_pretrained(str(path))
        del peft_model, model
    return paths


async def load_adapters(stub: generator_pb2_grpc.GeneratorServiceStub, paths: Sequence[Path]) -> list[str]:
    """LoadAdapter each as ``bench-lora-<i>`` (reloading one whose content changed)."""
    names = []
    for i, path in enumerate(paths):
        name = f"bench-lora-{i}"
        request = pb.LoadAdapterRequest(name=name, path=str(path), tenant=ADAPTER_TENANT)
        try:
            await stub.LoadAdapter(request, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            await stub.UnloadAdapter(pb.UnloadAdapterRequest(name=name, tenant=ADAPTER_TENANT), timeout=RPC_TIMEOUT_S)
            await stub.LoadAdapter(request, timeout=RPC_TIMEOUT_S)
        names.append(name)
    return names


async def unload_bench_adapters(stub: generator_pb2_grpc.GeneratorServiceStub) -> int:
    """Unload every adapter of the bench tenant, so a restart does not restore them."""
    listed = await stub.ListAdapters(pb.ListAdaptersRequest(tenant=ADAPTER_TENANT), timeout=60)
    for adapter in listed.adapters:
        await stub.UnloadAdapter(
            pb.UnloadAdapterRequest(name=adapter.name, tenant=ADAPTER_TENANT), timeout=RPC_TIMEOUT_S
        )
    return len(listed.adapters)
