"""The generator's ``enable_lora`` setting: off, vLLM gets no LoRA arguments and LoadAdapter's path
(``Engine.add_lora``) is refused with FAILED_PRECONDITION before the engine is touched."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ragtune_common.errors import FailedPrecondition
from ragtune_generator.engine import Engine
from ragtune_generator.settings import GeneratorSettings


def test_lora_is_on_by_default_with_its_limits() -> None:
    settings = GeneratorSettings(max_lora_rank=16, max_loras=4, max_cpu_loras=2)
    assert Engine(settings, Path("/nonexistent"))._lora_args() == {
        "enable_lora": True,
        "max_lora_rank": 16,
        "max_loras": 4,
        "max_cpu_loras": 4,
    }


def test_lora_off_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGTUNE_GENERATOR_ENABLE_LORA", "false")
    engine = Engine(GeneratorSettings(), Path("/nonexistent"))
    assert engine._lora_args() == {"enable_lora": False}
    with pytest.raises(FailedPrecondition, match="without LoRA"):
        asyncio.run(engine.add_lora("a", 1, "/nonexistent"))
    assert engine._lora_paths == {}
