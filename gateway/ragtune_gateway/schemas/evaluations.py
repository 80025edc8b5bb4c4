"""``POST /v1/evaluations``: a RAG-vs-fine-tuning evaluation on an ``evals`` file."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from ragtune_gateway.schemas.common import Id, Int64, Key, WireModel

ArmName = Literal["base", "rag", "ft", "rag+ft"]


class Promote(WireModel):
    model_config = ConfigDict(extra="forbid")
    alias: Key = Field(description="e.g. 'ft:latest-good'")
    arm: Literal["ft", "rag+ft"] = "ft"


class CreateEvaluation(WireModel):
    model_config = ConfigDict(extra="forbid")

    file_id: Id = Field(description="a file uploaded with purpose 'evals'")
    train: int = Field(default=300, ge=1, le=100_000)
    test: int = Field(default=300, ge=1, le=100_000)
    seed: Int64 = 0
    arms: list[ArmName] = Field(default=["base", "rag", "ft", "rag+ft"], min_length=1, max_length=16)
    train_sample: int = Field(default=50, ge=0, le=10_000)
    top_k: int = Field(default=3, ge=1, le=50)
    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"
    max_tokens: int = Field(default=32, ge=1, le=1024)
    epochs: int = Field(default=2, ge=1, le=50)
    raft_epochs: int = Field(default=1, ge=1, le=50)
    raft_train: int = Field(default=0, ge=0, le=100_000, description="RAFT examples; 0 = every training question")
    concurrency: int = Field(default=4, ge=1, le=64)
    max_seq_length: int = Field(default=1024, ge=128, le=8192, description="of the training examples")
    promote: Promote | None = None
