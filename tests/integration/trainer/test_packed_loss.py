"""Packed batches with the real base model (SmolLM2, Llama architecture, float32 on CPU with the
attention backend transformers picks, and with the trainer's example-by-example attention): the loss
masks are those of the unpacked examples and the loss of a packed batch equals the examples' loss
one by one; under bfloat16 autocast it is within bfloat16's precision of that."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from ragtune_trainer import attention
from ragtune_trainer.collation import PackingCollator
from ragtune_trainer.datasets import Example, Message
from ragtune_trainer.loop import target_loss
from ragtune_trainer.masks import IGNORE_INDEX, tokenize_example

CONVERSATIONS = [
    (("user", "Colour of snow?", 0), ("assistant", "White.", 1)),
    (("system", "Answer in one word.", 0), ("user", "Capital of France?", 0), ("assistant", "Paris", 1)),
    (
        ("user", "Name a colour.", 0),
        ("assistant", "Blue, like the sky on a clear summer afternoon.", 0),  # weight 0: no loss
        ("user", "Another one?", 0),
        ("assistant", "Green.", 1),
    ),
    (("user", "Count to five, please, and say nothing else at all.", 0), ("assistant", "1 2 3 4 5", 1)),
    (("user", "What is two plus two?", 0), ("assistant", "Four.", 1), ("user", "And times three?", 0),
     ("assistant", "Twelve.", 1)),
]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(base_model_dir):
    return AutoTokenizer.from_pretrained(str(base_model_dir))


@pytest.fixture(scope="module")
def model(base_model_dir):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(base_model_dir), dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])
    peft_model = get_peft_model(base, lora)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    return peft_model.eval()


def _features(tokenizer):
    examples = [Example(i + 1, tuple(Message(*turn) for turn in c)) for i, c in enumerate(CONVERSATIONS)]
    return [{"input_ids": t.input_ids, "labels": t.labels} for t in (tokenize_example(tokenizer, e) for e in examples)]


def test_packed_masks_are_the_examples_masks(tokenizer):
    features = _features(tokenizer)
    batch = PackingCollator(tokenizer.pad_token_id, row_tokens=10_000)(features)
    assert batch["input_ids"].shape[0] == 1, "all five in one row"
    packed_targets = batch["labels"][0][batch["labels"][0] != IGNORE_INDEX].tolist()
    # FFD places the longest example first; the row's trained tokens are each example's, in row order
    order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))
    assert packed_targets == [x for i in order for x in features[i]["labels"] if x != IGNORE_INDEX]
    assert batch["position_ids"][0].tolist() == [p for i in order for p in range(len(features[i]["input_ids"]))]


def _one_by_one(model, features) -> float:
    total, count = torch.zeros((), dtype=torch.float64), 0
    for feature in features:
        labels = torch.tensor([feature["labels"]])
        n = int((labels[:, 1:] != IGNORE_INDEX).sum())
        out = model(input_ids=torch.tensor([feature["input_ids"]]), labels=labels, use_cache=False)
        total, count = total + out.loss.double() * n, count + n
    return float(total) / count


@pytest.mark.parametrize("implementation", ["sdpa", attention.register()])
@pytest.mark.parametrize("row_tokens", [64, 10_000])
def test_packed_loss_equals_the_examples_one_by_one(tokenizer, model, row_tokens, implementation, monkeypatch):
    monkeypatch.setattr(model.config, "_attn_implementation", implementation)
    features = _features(tokenizer)
    with torch.no_grad():
        reference = _one_by_one(model, features)
        summed, count = target_loss(model, PackingCollator(tokenizer.pad_token_id, row_tokens)(features))
        assert count == sum(sum(1 for x in f["labels"][1:] if x != IGNORE_INDEX) for f in features)
        assert float(summed) / count == pytest.approx(reference, rel=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            summed, _ = target_loss(model, PackingCollator(tokenizer.pad_token_id, row_tokens)(features))
    assert float(summed) / count == pytest.approx(reference, rel=2e-2), "bfloat16 keeps 8 bits of mantissa"
