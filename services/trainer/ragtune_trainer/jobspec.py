"""A job's configuration: request values checked field by field, "auto" resolved from the dataset
(after the OpenAI fine-tuning API's rules), and the fine-tuned model's name."""

from __future__ import annotations

import math
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ragtune_common.errors import InvalidArgument

LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_SUFFIX = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")
_MIN_TARGET_EXAMPLES, _MAX_TARGET_EXAMPLES = 100, 25_000


def new_id(prefix: str) -> str:
    """Time-ordered ids: later ids sort after earlier ones (listing newest first pages by id)."""
    return f"{prefix}-{time.time_ns() // 1_000_000:012x}{secrets.token_hex(4)}"


@dataclass(frozen=True)
class JobRequest:
    """What a client asked for; None = "auto" / the default."""

    n_epochs: float | None = None
    batch_size: float | None = None
    learning_rate_multiplier: float | None = None
    lora_r: int = 0
    lora_alpha: float = 0.0
    lora_dropout: float | None = None
    target_modules: tuple[str, ...] = ()
    suffix: str = ""
    seed: int | None = None
    max_seq_length: int = 0
    validation_fraction: float | None = None
    eval_interval_steps: int = 0
    early_stopping_patience: int = 0
    checkpoint_interval_steps: int = 0


@dataclass(frozen=True)
class JobConfig:
    """Every value resolved; stored with the job and handed to the training process."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    learning_rate: float
    lora_r: int
    lora_alpha: float
    lora_dropout: float
    target_modules: list[str] = field(default_factory=list)
    suffix: str = ""
    seed: int = 0
    max_seq_length: int = 1024
    validation_fraction: float = 0.0
    eval_interval_steps: int = 0
    early_stopping_patience: int = 0
    checkpoint_interval_steps: int = 100
    total_steps: int = 0
    # how the training process batches and computes: the replica's settings when the job was created
    # (a job stored before they were recorded trained packed rows of 512 tokens in float32)
    packing: bool = True
    row_tokens: int = 512
    precision: str = "fp32"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> JobConfig:
        return cls(**value)


def _whole(value: float | None, low: int, high: int, auto: int, name: str) -> int:
    if value is None:
        return auto
    if value != int(value) or not low <= value <= high:
        raise InvalidArgument(f"must be a whole number from {low} to {high}, or auto", field=name)
    return int(value)


def _auto_epochs(examples: int) -> int:
    epochs = 3
    if examples * epochs < _MIN_TARGET_EXAMPLES:
        epochs = min(25, math.ceil(_MIN_TARGET_EXAMPLES / examples))
    elif examples * epochs > _MAX_TARGET_EXAMPLES:
        epochs = max(1, _MAX_TARGET_EXAMPLES // examples)
    return epochs


def _lora(request: JobRequest, max_rank: int) -> tuple[int, float, float, list[str]]:
    r = request.lora_r or min(8, max_rank)
    if not 1 <= r <= max_rank:
        raise InvalidArgument(
            f"must be between 1 and {max_rank}: the generators serve LoRA ranks up to {max_rank}", field="lora.r"
        )
    alpha = request.lora_alpha or 2.0 * r
    if not 0 < alpha <= 4096 or math.isnan(alpha):
        raise InvalidArgument("must be above 0 and at most 4096", field="lora.alpha")
    dropout = 0.05 if request.lora_dropout is None else request.lora_dropout
    if not 0 <= dropout < 1:
        raise InvalidArgument("must be in [0, 1)", field="lora.dropout")
    modules = list(dict.fromkeys(request.target_modules)) or list(LORA_MODULES)
    unknown = [m for m in modules if m not in LORA_MODULES]
    if unknown:
        raise InvalidArgument(
            f"unknown {unknown}: use a subset of {' '.join(LORA_MODULES)}", field="lora.target_modules"
        )
    return r, alpha, dropout, modules


def resolve_config(
    request: JobRequest,
    *,
    train_examples: int,
    has_validation_file: bool,
    base_learning_rate: float,
    default_max_seq_length: int,
    max_seq_length_limit: int,
    default_checkpoint_interval: int,
    max_lora_rank: int,
) -> JobConfig:
    """Check every field (naming it on error) and resolve "auto" from the training set's size."""
    if request.seed is not None and not 0 <= request.seed < 2**32:
        raise InvalidArgument("must be between 0 and 2^32 - 1", field="seed")
    if request.suffix and not _SUFFIX.match(request.suffix):
        raise InvalidArgument("must be 1-40 characters of letters, digits, '_', '.', '-'", field="suffix")
    max_seq_length = request.max_seq_length or min(default_max_seq_length, max_seq_length_limit)
    if not 16 <= max_seq_length <= max_seq_length_limit:
        raise InvalidArgument(f"must be between 16 and {max_seq_length_limit}", field="max_seq_length")
    if has_validation_file:
        if request.validation_fraction:
            raise InvalidArgument(
                "give a validation_file or a validation_fraction, not both", field="validation_fraction"
            )
        fraction = 0.0
    elif request.validation_fraction is None:
        fraction = 0.1 if train_examples >= 20 else 0.0
    else:
        fraction = request.validation_fraction
        if not 0 <= fraction <= 0.5:
            raise InvalidArgument("must be between 0 and 0.5", field="validation_fraction")
    held_out = math.ceil(train_examples * fraction) if fraction else 0
    remaining = train_examples - held_out
    if remaining < 1:
        raise InvalidArgument("leaves no training examples", field="validation_fraction")
    evaluates = has_validation_file or held_out > 0
    for name in ("eval_interval_steps", "early_stopping_patience", "checkpoint_interval_steps"):
        if getattr(request, name) < 0:
            raise InvalidArgument("must not be negative", field=name)
    if request.early_stopping_patience and not evaluates:
        raise InvalidArgument("needs a validation_file or a validation_fraction", field="early_stopping_patience")

    n_epochs = _whole(request.n_epochs, 1, 50, _auto_epochs(remaining), "hyperparameters.n_epochs")
    auto_batch = max(1, min(32, math.ceil(remaining * 0.002)))
    batch_size = _whole(request.batch_size, 1, 256, auto_batch, "hyperparameters.batch_size")
    multiplier = 1.0 if request.learning_rate_multiplier is None else request.learning_rate_multiplier
    if not 0 < multiplier <= 100:
        raise InvalidArgument(
            "must be above 0 and at most 100, or auto", field="hyperparameters.learning_rate_multiplier"
        )
    r, alpha, dropout, modules = _lora(request, max_lora_rank)
    total_steps = n_epochs * math.ceil(remaining / batch_size)
    eval_interval = request.eval_interval_steps or max(1, total_steps // 10)
    return JobConfig(
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate_multiplier=multiplier,
        learning_rate=base_learning_rate * multiplier,
        lora_r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=modules,
        suffix=request.suffix,
        seed=secrets.randbelow(2**31) if request.seed is None else request.seed,
        max_seq_length=max_seq_length,
        validation_fraction=fraction,
        eval_interval_steps=eval_interval if evaluates else 0,
        early_stopping_patience=request.early_stopping_patience,
        checkpoint_interval_steps=request.checkpoint_interval_steps or default_checkpoint_interval,
        total_steps=total_steps,
    )


def fine_tuned_model_name(base_model: str, suffix: str, job_id: str) -> str:
    """``ft:<base>:<suffix>:<id>`` (``ft:<base>:<id>`` without a suffix); a path base uses its dir name."""
    base = base_model.rstrip("/").rsplit("/", 1)[-1]
    return ":".join(["ft", base, *([suffix] if suffix else []), job_id])
