"""Job configuration: "auto" resolution and field-named errors."""

from __future__ import annotations

from typing import Any

import pytest

from ragtune_common.errors import InvalidArgument
from ragtune_trainer.jobspec import JobRequest, fine_tuned_model_name, new_id, resolve_config

DEFAULTS: dict[str, Any] = {
    "base_learning_rate": 2e-4,
    "default_max_seq_length": 1024,
    "max_seq_length_limit": 8192,
    "default_checkpoint_interval": 100,
    "max_lora_rank": 16,
}


def _resolve(request: JobRequest, examples: int = 100, validation_file: bool = False):
    return resolve_config(request, train_examples=examples, has_validation_file=validation_file, **DEFAULTS)


def test_auto_values_follow_the_dataset_size():
    small = _resolve(JobRequest(seed=1), examples=10)
    assert (small.n_epochs, small.batch_size, small.validation_fraction) == (10, 1, 0.0)
    assert small.eval_interval_steps == 0 and small.total_steps == 100
    big = _resolve(JobRequest(seed=1), examples=20_000)
    assert big.n_epochs == 1 and big.batch_size == 32 and big.validation_fraction == 0.1
    assert big.total_steps == 18_000 // 32 + 1 and big.eval_interval_steps == big.total_steps // 10
    assert big.learning_rate == pytest.approx(2e-4) and big.lora_r == 8 and big.lora_alpha == 16
    assert big.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_explicit_values_are_kept():
    config = _resolve(
        JobRequest(n_epochs=2, batch_size=4, learning_rate_multiplier=0.5, lora_r=16, lora_alpha=8, seed=5),
        validation_file=True,
    )
    assert (config.n_epochs, config.batch_size, config.learning_rate, config.lora_r, config.lora_alpha) == (
        2,
        4,
        pytest.approx(1e-4),
        16,
        8,
    )
    assert config.seed == 5 and config.eval_interval_steps == 5 and config.validation_fraction == 0


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (JobRequest(n_epochs=0), "hyperparameters.n_epochs"),
        (JobRequest(batch_size=2.5), "hyperparameters.batch_size"),
        (JobRequest(learning_rate_multiplier=0), "hyperparameters.learning_rate_multiplier"),
        (JobRequest(lora_r=65), "lora.r"),
        (JobRequest(lora_r=32), "lora.r"),  # the generators serve ranks up to max_lora_rank (16 here)
        (JobRequest(lora_alpha=-1), "lora.alpha"),
        (JobRequest(target_modules=("embed_tokens",)), "lora.target_modules"),
        (JobRequest(suffix="x" * 41), "suffix"),
        (JobRequest(max_seq_length=9000), "max_seq_length"),
        (JobRequest(validation_fraction=0.6), "validation_fraction"),
        (JobRequest(early_stopping_patience=3, validation_fraction=0), "early_stopping_patience"),
        (JobRequest(checkpoint_interval_steps=-1), "checkpoint_interval_steps"),
        (JobRequest(seed=-1), "seed"),
    ],
)
def test_impossible_values_name_their_field(request_, field):
    with pytest.raises(InvalidArgument) as err:
        _resolve(request_)
    assert err.value.field == field


def test_rank_limit_follows_the_generators():
    with pytest.raises(InvalidArgument) as err:
        resolve_config(
            JobRequest(lora_r=16), train_examples=100, has_validation_file=False, **{**DEFAULTS, "max_lora_rank": 8}
        )
    assert err.value.field == "lora.r" and "up to 8" in err.value.message
    assert _resolve(JobRequest(lora_r=16)).lora_r == 16
    assert (
        resolve_config(
            JobRequest(), train_examples=100, has_validation_file=False, **{**DEFAULTS, "max_lora_rank": 4}
        ).lora_r
        == 4
    )


def test_names():
    assert (
        fine_tuned_model_name("SmolLM2-135M-Instruct", "support", "ftjob-1")
        == "ft:SmolLM2-135M-Instruct:support:ftjob-1"
    )
    assert fine_tuned_model_name("/models/my-llm/", "", "ftjob-1") == "ft:my-llm:ftjob-1"
    first, second = new_id("ftjob"), new_id("ftjob")
    assert first.startswith("ftjob-") and first != second
