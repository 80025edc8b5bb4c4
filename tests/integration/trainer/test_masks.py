"""Loss masks with the real base model's tokenizer and chat template (which inserts a default
system message when a conversation has none)."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from ragtune_trainer.datasets import Example, Message
from ragtune_trainer.masks import IGNORE_INDEX, tokenize_example


@pytest.fixture(scope="module")
def tokenizer(base_model_dir):
    return AutoTokenizer.from_pretrained(str(base_model_dir))


def _trained_text(tokenizer, example: Example) -> list[str]:
    """The decoded runs of consecutive trained tokens."""
    item = tokenize_example(tokenizer, example)
    runs: list[str] = []
    current: list[int] = []
    for token, label in zip(item.input_ids, item.labels, strict=True):
        if label == IGNORE_INDEX:
            if current:
                runs.append(tokenizer.decode(current))
            current = []
        else:
            assert label == token
            current.append(token)
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def test_mask_covers_exactly_the_assistant_turns(tokenizer):
    example = Example(
        1,
        (
            Message("user", "Name a colour.", 0),
            Message("assistant", "Blue.", 1),
            Message("user", "Another one?", 0),
            Message("assistant", "Green.", 1),
        ),
    )
    assert _trained_text(tokenizer, example) == ["Blue.<|im_end|>\n", "Green.<|im_end|>\n"]
    item = tokenize_example(tokenizer, example)
    assert "You are a helpful AI assistant" in tokenizer.decode(item.input_ids)  # the template's default


def test_explicit_system_message_and_weight_zero(tokenizer):
    example = Example(
        1,
        (
            Message("system", "Be terse.", 0),
            Message("user", "Hi", 0),
            Message("assistant", "Hello, how can I help you today?", 0),
            Message("user", "Colour of snow?", 0),
            Message("assistant", "White.", 1),
        ),
    )
    assert _trained_text(tokenizer, example) == ["White.<|im_end|>\n"]
    item = tokenize_example(tokenizer, example)
    assert "helpful AI assistant" not in tokenizer.decode(item.input_ids)


def test_all_weight_zero_trains_nothing(tokenizer):
    example = Example(1, (Message("user", "Hi", 0), Message("assistant", "Hello", 0)))
    assert tokenize_example(tokenizer, example).trained_tokens == 0
