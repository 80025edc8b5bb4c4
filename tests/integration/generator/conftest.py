"""One real vLLM engine (SmolLM2, converted from the shipped GGUF) for the whole session,
served in-process on a real gRPC port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from ragtune.generator.v1 import generator_pb2_grpc
from ragtune_common.models import resolve_base_model
from ragtune_common.server import GrpcServer
from ragtune_generator.main import create_server
from ragtune_generator.runtime import GeneratorRuntime
from ragtune_generator.settings import GeneratorSettings


@pytest.fixture(scope="session")
def generator_settings(state_dir: Path) -> GeneratorSettings:
    return GeneratorSettings(
        state_dir=state_dir,
        port=0,
        max_model_len=1024,
        max_num_seqs=8,
        max_inflight=3,
        gpu_memory_utilization=0.25,
        grace_period_s=5,
        drain_notice_s=0,
    )


@pytest.fixture(scope="session")
def base_model_dir(generator_settings: GeneratorSettings) -> Path:
    return resolve_base_model(generator_settings.base_model, generator_settings.state_dir)


@pytest_asyncio.fixture(scope="session")
async def generator_runtime(generator_settings: GeneratorSettings) -> AsyncIterator[GeneratorRuntime]:
    runtime = GeneratorRuntime(generator_settings)
    await runtime.start()
    yield runtime
    await runtime.close()


@pytest_asyncio.fixture(scope="session")
async def generator_server(
    generator_settings: GeneratorSettings, generator_runtime: GeneratorRuntime
) -> AsyncIterator[GrpcServer]:
    bound = await create_server(generator_settings, generator_runtime)
    await bound.server.start()
    await bound.set_serving()
    yield bound
    await bound.stop(1)


@pytest_asyncio.fixture(scope="session")
async def generator_stub(generator_server: GrpcServer) -> AsyncIterator[generator_pb2_grpc.GeneratorServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{generator_server.port}") as channel:
        yield generator_pb2_grpc.GeneratorServiceStub(channel)


@pytest.fixture(scope="session")
def make_adapter(base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """A real PEFT LoRA adapter on the base model, with non-zero B weights so it changes outputs."""

    def make(seed: int = 0, rank: int = 8, targets: tuple[str, ...] = ("q_proj", "v_proj"), std: float = 0.5) -> Path:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(base_model_dir), dtype=torch.float32)
        peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets)))
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * std)
        path = tmp_path_factory.mktemp(f"adapter-{seed}-{rank}")
        peft_model.save_pretrained(str(path))
        return path

    return make


def write_fake_adapter(path: Path, config: dict, tensors: dict) -> Path:
    """An adapter directory written by hand, for validation failures."""
    import numpy as np
    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps(config))
    save_file({k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}, str(path / "adapter_model.safetensors"))
    return path
