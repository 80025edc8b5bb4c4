"""Loss masks with the real base model's tokenizer and chat template (which inserts a default
system message when a conversation has none)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from ragtune_trainer.datasets import Example, Message
from ragtune_trainer.masks import IGNORE_INDEX, _spans_by_prefixes, assistant_spans, tokenize_example


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


class _CountingTokenizer:
    """The real tokenizer, counting how many characters its chat template renders."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self.rendered = 0

    def apply_chat_template(self, *args, **kwargs):
        text = self._tokenizer.apply_chat_template(*args, **kwargs)
        self.rendered += len(text)
        return text

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)


def _conversation(turns: int, words: int) -> tuple[Message, ...]:
    messages = []
    for i in range(turns):
        messages.append(Message("user", f"question {i} " + "word " * words, 0))
        messages.append(Message("assistant", f"answer {i} " + "word " * words, 1))
    return tuple(messages)


def test_mask_work_is_linear_in_the_line(tokenizer):
    """The template renders a bounded multiple of the line, however many turns it has (rendering
    every prefix rendered about turns/2 times the line)."""
    ratios = []
    for turns in (5, 50, 100):
        counting = _CountingTokenizer(tokenizer)
        item = tokenize_example(counting, Example(1, _conversation(turns, 20)))
        assert item.trained_tokens > 0
        ratios.append(
            counting.rendered
            / len(
                tokenizer.apply_chat_template(
                    [{"role": m.role, "content": m.content} for m in _conversation(turns, 20)], tokenize=False
                )
            )
        )
    assert max(ratios) < 2.5, ratios


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.booleans(),
    st.lists(
        st.tuples(
            st.text(st.characters(codec="utf-8"), max_size=30),
            st.text(st.characters(codec="utf-8"), min_size=1, max_size=30).filter(str.strip),
            st.sampled_from([0, 1]),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_linear_spans_equal_rendering_every_prefix(tokenizer, system, turns):
    messages = [Message("system", "Be brief.", 0)] if system else []
    for question, answer, weight in turns:
        messages += [Message("user", question, 0), Message("assistant", answer, weight)]
    full, spans = assistant_spans(tokenizer, tuple(messages))
    assert spans == _spans_by_prefixes(tokenizer, tuple(messages), full)
