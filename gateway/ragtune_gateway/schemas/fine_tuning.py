"""``/v1/fine_tuning/jobs``: the request that creates a LoRA job (every number checked against the
range of its ``trainer.proto`` field; the trainer checks what the values mean), and the job, its
events and its checkpoints as answered: ``openai.types.fine_tuning.FineTuningJob``,
``FineTuningJobEvent`` and ``jobs.FineTuningJobCheckpoint`` field for field, plus ragtune's
extensions (progress, losses, the LoRA configuration, publication, CPU time)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from ragtune_gateway.schemas.common import (
    INT32_MAX,
    Id,
    Key,
    NonNegInt32,
    Omitted,
    ResponseModel,
    Text,
    UInt32,
    WireModel,
)

# The trainer's field paths that the request names otherwise (every other field keeps its name).
JOB_FIELDS = {"page.page_token": "after"}

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


# Responses

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
PublishState = Literal["pending", "published", "failed"]
Auto = Literal["auto"]


class JobHyperparameters(ResponseModel):
    """What the job trains with: a number, or ``"auto"`` for the trainer's choice."""

    batch_size: Auto | int | None = None
    learning_rate_multiplier: Auto | int | float | None = None  # an int stays one on the wire
    n_epochs: Auto | int | None = None


class SupervisedMethod(ResponseModel):
    hyperparameters: JobHyperparameters | None = None


class JobMethod(ResponseModel):
    type: Literal["supervised", "dpo", "reinforcement"]
    dpo: Omitted[dict[str, Any]] = None  # never sent: ragtune trains supervised LoRA only
    reinforcement: Omitted[dict[str, Any]] = None  # never sent
    supervised: SupervisedMethod | None = None


class JobError(ResponseModel):
    """Why a job failed; ``param`` names the request field at fault, when one is."""

    code: str
    message: str
    param: str | None = None


class JobLora(ResponseModel):
    """The LoRA configuration the job trains (a ragtune extension)."""

    r: int
    alpha: float
    dropout: float
    target_modules: list[str]


class FineTuningJob(ResponseModel):
    """``fine_tuning.job``: ``fine_tuned_model`` and ``trained_tokens`` are set once it succeeded,
    ``finished_at`` once it finished."""

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    finished_at: int | None = None
    model: str
    fine_tuned_model: str | None = None
    organization_id: str = Field(description="The tenant")
    status: JobStatus
    hyperparameters: JobHyperparameters
    method: JobMethod | None = None
    training_file: str
    validation_file: str | None = None
    result_files: list[str]
    trained_tokens: int | None = None
    error: JobError | None = None
    seed: int
    user_provided_suffix: str | None = None
    estimated_finish: int | None = None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None
    # ragtune extensions
    step: int | None = None
    total_steps: int | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    lora: JobLora | None = None
    publish_state: PublishState | None = Field(
        default=None, description="The adapter's publication; `failed`: retry with POST .../publish"
    )
    publish_error: str | None = None
    cpu_seconds: float | None = None


class FineTuningJobEvent(ResponseModel):
    """``fine_tuning.job.event``: ``data`` holds the figures of a ``metrics`` event (step, losses,
    throughput) or what a ``message`` event is about."""

    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    type: Literal["message", "metrics"] | None = None
    message: str
    data: dict[str, Any] | None = None


class CheckpointMetrics(ResponseModel):
    """The step the checkpoint was saved at; the client's other metrics are not measured (not sent)."""

    full_valid_loss: Omitted[float] = None
    full_valid_mean_token_accuracy: Omitted[float] = None
    step: int | float | None = None  # an int stays one on the wire
    train_loss: Omitted[float] = None
    train_mean_token_accuracy: Omitted[float] = None
    valid_loss: Omitted[float] = None
    valid_mean_token_accuracy: Omitted[float] = None


class FineTuningJobCheckpoint(ResponseModel):
    """``fine_tuning.job.checkpoint``: a saved step of a job's adapter."""

    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: CheckpointMetrics
