"""``/v1/evaluations``: a RAG-vs-fine-tuning evaluation on an ``evals`` file, and what the routes answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from ragtune_gateway.schemas.common import Deleted, Id, Int64, Key, ListPage, ResponseModel, WireModel

ArmName = Literal["base", "rag", "ft", "rag+ft"]
EvaluationStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


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
    raft_recipe: Literal["published", "answer-only"] = Field(
        default="published",
        description="RAFT as published (reasoning quoting the gold passage, then '<ANSWER>:') or the answer alone",
    )
    distractors: int = Field(default=4, ge=0, le=20, description="retrieved distractors per RAFT example")
    no_gold_fraction: float = Field(default=0.2, ge=0, le=1, description="RAFT examples without their gold passage")
    reasoning_max_tokens: int = Field(default=96, ge=1, le=2048, description="answer budget of a reasoning adapter")
    paraphrases: int = Field(default=0, ge=0, le=4, description="closed-book examples repeated, question rephrased")
    promotion_level: float = Field(
        default=0.95, ge=0.5, lt=1, description="confidence a promotion's paired improvement must reach"
    )
    promote: Promote | None = None


# Responses


class ProgressStep(ResponseModel):
    key: str = Field(description="e.g. 'upload', 'index', 'train-ft', 'answer-rag'")
    description: str
    completed: int
    total: int | None = None
    note: str = ""


class EvaluationProgress(ResponseModel):
    steps: list[ProgressStep] = Field(default_factory=list, description="in the order the run started them")


class EvaluationError(ResponseModel):
    message: str


class Evaluation(ResponseModel):
    """An evaluation and, once it succeeded, its report (the same as ``ragtune eval squad``'s
    ``report.json``: figures, costs and the recommendation per arm)."""

    id: str
    object: Literal["evaluation"] = "evaluation"
    status: EvaluationStatus
    created_at: int
    started_at: int | None = None
    finished_at: int | None = None
    request: dict[str, Any] = Field(description="the request as accepted: arms in canonical order, the file's name")
    progress: EvaluationProgress
    report: dict[str, Any] | None = None
    promotion: dict[str, Any] | None = Field(default=None, description="the alias decision, when promote was asked")
    error: EvaluationError | None = None


EvaluationList = ListPage[Evaluation]


class EvaluationDeleted(Deleted):
    object: Literal["evaluation.deleted"] = "evaluation.deleted"
