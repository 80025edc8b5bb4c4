"""A packed batch trains exactly like its examples one by one: same loss, same LoRA gradients
(a tiny random Llama with LoRA, float32 on CPU, each attention backend that runs there, the
trainer's example-by-example attention included); under bfloat16 autocast, within bfloat16's
precision of float32."""

from __future__ import annotations

import random

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from ragtune_trainer import attention, loop
from ragtune_trainer.collation import PackingCollator, PaddingCollator
from ragtune_trainer.loop import target_loss
from ragtune_trainer.masks import IGNORE_INDEX

VOCAB = 64
SEGMENTS = attention.register()


def _model(attention: str) -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    config._attn_implementation = attention
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])
    model = get_peft_model(LlamaForCausalLM(config).float(), lora)
    with torch.no_grad():  # LoRA's B starts at zero: give the adapter an effect to differentiate
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1)
    return model


def _examples(count: int, seed: int) -> list[dict[str, list[int]]]:
    """Chat-like examples: a prompt without loss, then trained spans (weight-0 turns between)."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        ids = [rng.randrange(1, VOCAB) for _ in range(rng.randint(3, 40))]
        labels = [IGNORE_INDEX] * len(ids)
        for _ in range(rng.randint(1, 3)):
            start = rng.randrange(1, len(ids))
            end = rng.randint(start, len(ids))
            labels[start:end] = ids[start:end]
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def _one_by_one(model: torch.nn.Module, examples: list[dict[str, list[int]]]) -> torch.Tensor:
    """transformers' own loss per example (mean over its shifted targets), weighted back to a sum."""
    total, count = torch.zeros(()), 0
    for example in examples:
        labels = torch.tensor([example["labels"]])
        n = int((labels[:, 1:] != IGNORE_INDEX).sum())
        if n:
            out = model(input_ids=torch.tensor([example["input_ids"]]), labels=labels, use_cache=False)
            total, count = total + out.loss * n, count + n
    return total / count


def _lora_grads(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


@pytest.mark.parametrize("implementation", ["sdpa", "eager", SEGMENTS])
@pytest.mark.parametrize("row_tokens", [16, 64, 1000])
def test_packed_loss_and_gradients_equal_the_examples_one_by_one(implementation, row_tokens):
    model = _model(implementation)
    model.train()
    examples = _examples(9, seed=row_tokens)
    reference = _one_by_one(model, examples)
    reference_grads = _lora_grads(model, reference)

    batch = PackingCollator(pad_token_id=0, row_tokens=row_tokens)(examples)
    assert batch["input_ids"].shape[0] > 1 or row_tokens == 1000  # several rows, or one row of all nine
    summed, count = target_loss(model, batch)
    packed = summed / count
    assert count == sum(sum(1 for x in e["labels"][1:] if x != IGNORE_INDEX) for e in examples)
    torch.testing.assert_close(packed, reference, rtol=1e-5, atol=1e-6)
    packed_grads = _lora_grads(model, packed)
    assert packed_grads.keys() == reference_grads.keys() and packed_grads
    for name, grad in reference_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("implementation", ["sdpa", SEGMENTS])
def test_padded_batches_and_the_full_logits_path_agree(monkeypatch, implementation):
    model = _model(implementation)
    examples = _examples(6, seed=5)
    reference = _one_by_one(model, examples)
    summed, count = target_loss(model, PaddingCollator(pad_token_id=0)(examples))
    torch.testing.assert_close(summed / count, reference, rtol=1e-5, atol=1e-6)
    # models whose logits are more than the LM head's projection take the model's own forward
    monkeypatch.setattr(loop, "projects_plainly", lambda _: False)
    summed, count = target_loss(model, PackingCollator(pad_token_id=0, row_tokens=32)(examples))
    torch.testing.assert_close(summed / count, reference, rtol=1e-5, atol=1e-6)


def test_softcapped_models_are_not_projected_plainly():
    model = _model("sdpa").get_base_model()  # type: ignore[operator]
    assert loop.projects_plainly(model)
    model.config.final_logit_softcapping = 30.0
    assert not loop.projects_plainly(model)


def test_segments_are_the_runs_of_position_ids_counting_up():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1], [0, 1, 2, 3, 4, 5, 6, 7]])
    assert attention.segment_bounds(positions) == [[(0, 3), (3, 5), (5, 6), (6, 8)], [(0, 8)]]


def test_bf16_autocast_loss_and_gradients_are_within_bf16_of_float32():
    """The training forward under bfloat16 autocast (weights float32): the packed loss within
    bfloat16's precision of the float32 loss, gradients pointing the same way."""
    model = _model(SEGMENTS)
    model.train()
    batch = PackingCollator(pad_token_id=0, row_tokens=64)(_examples(9, seed=3))
    summed, count = target_loss(model, batch)
    reference = summed / count
    reference_grads = _lora_grads(model, reference)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        summed, count = target_loss(model, batch)
    mixed = summed / count
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, reference, rtol=2e-2, atol=0.0)  # bfloat16 keeps 8 bits of mantissa
    mixed_grads = _lora_grads(model, mixed)
    assert all(p.dtype == torch.float32 for p in mixed_grads.values()), "LoRA weights and gradients stay float32"
    for name, grad in reference_grads.items():
        cosine = torch.nn.functional.cosine_similarity(mixed_grads[name].flatten(), grad.flatten(), dim=0)
        assert cosine > 0.99, (name, float(cosine))
