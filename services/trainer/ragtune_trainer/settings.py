"""Trainer settings: ``RAGTUNE_TRAINER_*`` plus the shared ``DATABASE_URL`` / ``RAGTUNE_STATE_DIR``."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragtune_common.settings import DatabaseSettings, ServiceSettings


def _default_replica_id() -> str:
    """Host name (the pod name on Kubernetes), process id and a random tail: unique per process."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


Precision = Literal["auto", "fp32", "bf16"]


class TrainingSettings(BaseSettings):
    """How training processes batch and compute. Part of the replica's settings (a bad value stops
    the service at start). ``packing``, ``row_tokens`` and ``precision`` are written into each job's
    configuration when it is created, so the job records them and a resume on any replica trains
    the same way; ``torch_threads`` is the replica's own (its CPUs), given in each job's spec."""

    model_config = SettingsConfigDict(env_prefix="RAGTUNE_TRAINER_", extra="ignore", populate_by_name=True)

    packing: bool = Field(
        default=True,
        description="several examples per row, position ids restarting at each (attention stays inside every"
        " example); off: one example per row, rows padded and batches grouped by length",
    )
    row_tokens: int = Field(
        default=512,
        ge=16,
        description="a packed row holds up to this many tokens, or the batch's longest example if longer."
        " CPU attention kernels compute a row's whole masked square, so rows stay short; but rows only a"
        " little longer than the longest example fit one example each and pad like unpacked batches",
    )
    precision: Precision = Field(
        default="fp32",
        description="bf16: the forward pass under bfloat16 autocast (matmuls in bfloat16, LoRA weights, their"
        " gradients and the optimizer state in float32); fp32: float32 throughout; auto: bf16 where the"
        " device computes bfloat16 natively (CUDA with bf16, CPUs with AVX512-BF16 or AMX), else fp32."
        " Validation losses are computed in float32 either way. fp32 stays the default until"
        " trainer_throughput shows bf16 reaching the same validation loss sooner in a whole run",
    )
    torch_threads: int = Field(
        default=0,
        ge=0,
        description="intra-op threads of a training process; 0 = the CPUs it may run on (affinity and cgroup"
        " quota). The replica's service process does no tensor work, so the two do not compete",
    )


class TrainerSettings(ServiceSettings, DatabaseSettings, TrainingSettings):
    model_config = SettingsConfigDict(env_prefix="RAGTUNE_TRAINER_", extra="ignore", populate_by_name=True)

    port: int = Field(default=50053, ge=0, le=65535)
    base_model: str = Field(
        default="SmolLM2-135M-Instruct", description="default base model: a shipped name or a local HF model dir"
    )
    artifacts_dir: Path | None = Field(
        default=None,
        description="datasets, checkpoints and finished adapters; unset = <state_dir>/trainer. Replicas share it"
        " (a shared volume): a job resumes on another replica from the checkpoints written here, and the"
        " generators copy published adapters from here into the adapter store",
    )
    generator_address: str = Field(default="127.0.0.1:50052", description="where published adapters are loaded")
    retriever_address: str = Field(default="127.0.0.1:50051", description="searched for RAFT distractors")
    device: str = Field(default="auto", description="auto | cpu | cuda")
    min_examples: int = Field(default=10, ge=1, description="fewest training examples a dataset may have")
    max_dataset_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    max_seq_length_limit: int = Field(default=8192, ge=16, description="longest example any job may train on")
    default_max_seq_length: int = Field(default=1024, ge=16)
    base_learning_rate: float = Field(default=2e-4, gt=0)
    default_checkpoint_interval_steps: int = Field(default=100, ge=1)
    checkpoints_kept: int = Field(default=2, ge=1, description="older checkpoints of a job are deleted")
    progress_interval_s: float = Field(default=1.0, ge=0, description="at most one progress event this often")
    cancel_grace_s: float = Field(default=3.0, ge=0, description="a cancelled training process gets this long")
    publish_timeout_s: float = Field(default=60.0, gt=0)
    retriever_timeout_s: float = Field(default=30.0, gt=0)
    poll_interval_s: float = Field(default=2.0, gt=0, description="how often idle workers and watchers re-check")
    replica_id: str = Field(
        default_factory=_default_replica_id,
        min_length=1,
        max_length=200,
        description="this replica's name in job leases and hand-over events (unique per process)",
    )
    lease_s: float = Field(
        default=30.0,
        ge=1,
        le=600,
        description="a job's lease: renewed every lease_s/3 while it trains; another replica resumes the job"
        " once it has expired (a dead replica's job moves on after about lease_s + poll_interval_s)",
    )
    republish_interval_s: float = Field(
        default=300.0, gt=0, description="how often succeeded jobs whose publishing failed are published again"
    )
    max_lora_rank: int = Field(
        default=16,
        ge=1,
        le=512,
        description="highest LoRA rank a job may ask for: keep it equal to the generators' max_lora_rank",
    )
    max_line_chars: int = Field(
        default=200_000, ge=100, description="longest dataset line (characters) accepted at upload"
    )
    max_messages_per_line: int = Field(default=200, ge=2, description="most chat messages one dataset line may hold")

    @property
    def artifacts(self) -> Path:
        return (self.artifacts_dir or self.state_dir / "trainer").expanduser().resolve()
