"""Generator settings: ``RAGTUNE_GENERATOR_*`` plus the shared ``RAGTUNE_STATE_DIR``."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from ragtune_common.models import DEFAULT_MODEL
from ragtune_common.settings import ServiceSettings

LORA_RANKS = (8, 16, 32, 64, 128, 256)


class GeneratorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAGTUNE_GENERATOR_", extra="ignore", populate_by_name=True)

    port: int = Field(default=50052, ge=0, le=65535)
    base_model: str = Field(default=DEFAULT_MODEL, description="shipped model name or a local HF model directory")
    served_model_name: str = Field(default="", description="name clients use for the base model; empty = derived")
    max_model_len: int = Field(default=2048, ge=128)
    max_num_seqs: int = Field(default=32, ge=1, description="sequences batched together by the engine")
    max_inflight: int = Field(default=64, ge=1, description="requests admitted at once; beyond: RESOURCE_EXHAUSTED")
    max_lora_rank: int = Field(default=64, description="one of 8, 16, 32, 64, 128, 256 (vLLM's choices)")
    max_loras: int = Field(default=4, ge=1, description="adapters active in one batch")
    max_cpu_loras: int = Field(default=16, ge=1, description="adapters kept loaded in memory")
    gpu_memory_utilization: float | None = Field(
        default=None, gt=0, le=1, description="unset: 0.3 on CPU (fraction of RAM for the KV cache), 0.85 on GPU"
    )
    dtype: str = Field(default="auto", description="auto: float32 on CPU, the model's dtype on GPU")
    default_max_tokens: int = Field(default=256, ge=1)

    @field_validator("max_lora_rank")
    @classmethod
    def _vllm_rank(cls, value: int) -> int:
        if value not in LORA_RANKS:
            raise ValueError(f"max_lora_rank must be one of {LORA_RANKS}")
        return value
