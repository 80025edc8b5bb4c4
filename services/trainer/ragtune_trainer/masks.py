"""Loss masks: which tokens of a chat example the model is trained on.

Stock chat templates carry no markers for generated text, so each assistant turn's span is found by
rendering the template on message prefixes: the turn starts where the rendering of the messages
before it, with the generation prompt, ends, and stops where the rendering that includes it ends.
Every prefix goes through the same template, so a default system message the template inserts
(SmolLM2 does) is part of every prefix alike. Only assistant turns with weight 1 carry loss, their
end-of-turn token included; everything else is labelled -100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ragtune_trainer.datasets import Example, Message

IGNORE_INDEX = -100


class TemplateError(ValueError):
    """The tokenizer's chat template cannot be used to derive loss masks."""


@dataclass(frozen=True)
class TokenizedExample:
    line: int
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _render(tokenizer: Any, messages: tuple[Message, ...], generation_prompt: bool) -> str:
    rendered = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages],
        tokenize=False,
        add_generation_prompt=generation_prompt,
    )
    if not isinstance(rendered, str):
        raise TemplateError("the chat template did not render to text")
    return rendered


def assistant_spans(tokenizer: Any, messages: tuple[Message, ...]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its trained assistant turns."""
    full = _render(tokenizer, messages, generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message.role != "assistant" or not message.weight:
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (through.startswith(before) and full.startswith(through)):
            raise TemplateError("the chat template does not render message prefixes as prefixes of the whole")
        spans.append((len(before), len(through)))
    return full, spans


def tokenize_example(tokenizer: Any, example: Example) -> TokenizedExample:
    """Input ids and labels (-100 outside trained assistant turns) of one example."""
    if not getattr(tokenizer, "is_fast", False):
        raise TemplateError("loss masks need a fast tokenizer (character offsets)")
    text, spans = assistant_spans(tokenizer, example.messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    span_index = 0
    for position, (start, end) in enumerate(encoded["offset_mapping"]):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        if span_index == len(spans):
            break
        span_start, span_end = spans[span_index]
        if end > span_start and start < span_end:
            labels[position] = ids[position]
    return TokenizedExample(example.line, ids, labels)


def count_tokens(tokenizer: Any, example: Example) -> tuple[int, int]:
    """(tokens, trained tokens) of one example."""
    tokenized = tokenize_example(tokenizer, example)
    return len(tokenized.input_ids), tokenized.trained_tokens
