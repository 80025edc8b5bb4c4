"""Generator settings: ``RAGTUNE_GENERATOR_*`` plus the shared ``RAGTUNE_STATE_DIR``, ``DATABASE_URL``
(the adapter registry) and ``RAGTUNE_ADAPTER_STORE`` (the adapter files every replica reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from ragtune_common.models import DEFAULT_MODEL
from ragtune_common.settings import DatabaseSettings, ServiceSettings

LORA_RANKS = (8, 16, 32, 64, 128, 256)
CPU_KV_CACHE_GIB = 1.0  # SmolLM2-135M: ~45 KiB a token, so ~23k tokens of context


class GeneratorSettings(ServiceSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGTUNE_GENERATOR_", extra="ignore", populate_by_name=True)

    port: int = Field(default=50052, ge=0, le=65535)
    base_model: str = Field(default=DEFAULT_MODEL, description="shipped model name or a local HF model directory")
    served_model_name: str = Field(default="", description="name clients use for the base model; empty = derived")
    max_model_len: int = Field(default=2048, ge=128)
    max_num_seqs: int = Field(default=32, ge=1, description="sequences batched together by the engine")
    max_inflight: int = Field(default=64, ge=1, description="requests admitted at once; beyond: RESOURCE_EXHAUSTED")
    max_lora_rank: int = Field(
        default=16,
        description="one of 8, 16, 32, 64, 128, 256 (vLLM's choices). vLLM pads every adapter to this rank: on CPU"
        " a rank-8 adapter answered ~4x slower at 64 than at 16 (measured), so raise it only for larger adapters",
    )
    enable_lora: bool = Field(
        default=True,
        description="false: the engine starts without LoRA support (base model only; LoadAdapter is refused with"
        " FAILED_PRECONDITION). Used as the no-LoRA baseline of generator_multi_adapter",
    )
    max_loras: int = Field(default=4, ge=1, description="adapters active in one batch")
    max_cpu_loras: int = Field(default=16, ge=1, description="adapters kept loaded in memory")
    gpu_memory_utilization: float = Field(
        default=0.85, gt=0, le=1, description="GPU: fraction of GPU memory vLLM uses (weights + KV cache)"
    )
    kv_cache_gib: float | None = Field(
        default=None,
        gt=0,
        description="KV cache size in GiB. Unset: 1 GiB on CPU; on GPU what gpu_memory_utilization leaves",
    )
    dtype: str = Field(default="auto", description="auto: float32 on CPU, the model's dtype on GPU")
    default_max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="completion tokens of a request that gives no max_tokens; unset = until the answer ends or the"
        " context is full (the model's context length minus the prompt), as OpenAI and vLLM's server",
    )
    adapter_store_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("adapter_store_dir", "RAGTUNE_ADAPTER_STORE"),
        description="published adapters, shared by every replica (a ReadWriteMany volume);"
        " unset = <state_dir>/adapters",
    )
    adapter_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="directories LoadAdapter may read from (comma-separated); unset = <state_dir>/trainer, where the"
        " trainer writes its adapters",
    )
    adapter_retry_interval_s: float = Field(
        default=30.0, gt=0, description="adapters whose stored files failed to load are re-checked this often"
    )

    @property
    def adapter_store(self) -> Path:
        return (self.adapter_store_dir or self.state_dir / "adapters").expanduser().resolve()

    @property
    def allowed_adapter_roots(self) -> list[Path]:
        return [p.expanduser().resolve() for p in self.adapter_roots] or [self.state_dir / "trainer"]

    @field_validator("adapter_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("adapter_roots")
    @classmethod
    def _absolute_roots(cls, value: list[Path]) -> list[Path]:
        for root in value:
            if not root.expanduser().is_absolute():
                raise ValueError(f"adapter root {root} must be an absolute path")
        return value

    def kv_cache_bytes(self, cpu: bool) -> int | None:
        """An explicit KV cache size. On CPU always: vLLM would size it as a fraction of the first NUMA
        node's memory, which on some VMs is a fraction of the RAM (seen: a 9.5 GiB node on a 24 GiB
        machine), and the engine then refuses to start."""
        gib = self.kv_cache_gib if self.kv_cache_gib is not None else (CPU_KV_CACHE_GIB if cpu else None)
        return None if gib is None else int(gib * 2**30)

    @field_validator("max_lora_rank")
    @classmethod
    def _vllm_rank(cls, value: int) -> int:
        if value not in LORA_RANKS:
            raise ValueError(f"max_lora_rank must be one of {LORA_RANKS}")
        return value
