"""Trainer settings: ``RAGTUNE_TRAINER_*`` plus the shared ``DATABASE_URL`` / ``RAGTUNE_STATE_DIR``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ragtune_common.settings import DatabaseSettings, ServiceSettings


class TrainerSettings(ServiceSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGTUNE_TRAINER_", extra="ignore", populate_by_name=True)

    port: int = Field(default=50053, ge=0, le=65535)
    base_model: str = Field(
        default="SmolLM2-135M-Instruct", description="default base model: a shipped name or a local HF model dir"
    )
    artifacts_dir: Path | None = Field(
        default=None, description="datasets, checkpoints and adapters; unset = <state_dir>/trainer"
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

    @property
    def artifacts(self) -> Path:
        return (self.artifacts_dir or self.state_dir / "trainer").expanduser().resolve()
