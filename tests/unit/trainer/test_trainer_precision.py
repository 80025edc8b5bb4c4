"""The precision a training process computes in, and what a job records of how it trains."""

from __future__ import annotations

import pytest
import torch

from ragtune_trainer import precision
from ragtune_trainer.jobspec import JobConfig
from ragtune_trainer.precision import autocast_dtype, resolve_precision


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_takes_bf16_only_where_the_device_has_it(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp16", "cpu")


def test_bf16_autocasts_the_forward_and_fp32_does_not():
    assert autocast_dtype("bf16") is torch.bfloat16 and autocast_dtype("fp32") is None


def test_a_job_stored_before_training_settings_were_recorded_trains_as_it_did():
    stored = {"n_epochs": 1, "batch_size": 2, "learning_rate_multiplier": 1.0, "learning_rate": 2e-4}
    config = JobConfig.from_json({**stored, "lora_r": 8, "lora_alpha": 16.0, "lora_dropout": 0.05})
    assert (config.packing, config.row_tokens, config.precision) == (True, 512, "fp32")
    assert JobConfig.from_json(config.to_json()) == config
