"""``POST /v1/fine_tuning/jobs``: a LoRA job. Every number is checked against the range of its
``trainer.proto`` field (the trainer checks what the values mean)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from ragtune_gateway.schemas.common import INT32_MAX, Id, Key, NonNegInt32, Text, UInt32, WireModel

# NumberOrAuto.number is a double; these are the sizes a job can meaningfully have.
Epochs = Annotated[int, Field(ge=1, le=1000)]
BatchSize = Annotated[int, Field(ge=1, le=INT32_MAX)]
LearningRateMultiplier = Annotated[float, Field(gt=0, le=1e6)]


class Hyperparameters(WireModel):
    n_epochs: Literal["auto"] | Epochs = "auto"
    batch_size: Literal["auto"] | BatchSize = "auto"
    learning_rate_multiplier: Literal["auto"] | LearningRateMultiplier = "auto"


class Supervised(WireModel):
    hyperparameters: Hyperparameters | None = None


class Method(WireModel):
    type: Literal["supervised"]
    supervised: Supervised | None = None


class Lora(WireModel):
    r: NonNegInt32 = 0
    alpha: float = Field(default=0, ge=0, le=1e6)
    dropout: float | None = Field(default=None, ge=0, le=1)
    target_modules: list[Annotated[Key, Field(max_length=128)]] = Field(default_factory=list, max_length=64)


class CreateJob(WireModel):
    model_config = ConfigDict(extra="ignore")
    model: Text = Field(default="", max_length=256)
    training_file: Id
    validation_file: Id | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: Text | None = Field(default=None, max_length=40)
    seed: UInt32 | None = Field(default=None, description="0 to 2^32 - 1")
    # ragtune extensions
    lora: Lora | None = None
    validation_fraction: float | None = Field(default=None, ge=0, le=1)
    max_seq_length: NonNegInt32 = 0
    eval_interval_steps: NonNegInt32 = 0
    early_stopping_patience: NonNegInt32 = 0
    checkpoint_interval_steps: NonNegInt32 = 0
