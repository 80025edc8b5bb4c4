"""Loss masks: which tokens of a chat example the model is trained on.

Stock chat templates carry no markers for generated text. A trained assistant turn starts where the
rendering of the messages before it, with the generation prompt, ends, and stops where the rendering
that includes it ends (its end-of-turn text included). Rendering every prefix would cost time
quadratic in the line, so the conversation is rendered once more as a skeleton, every message's
content replaced by a short numbered placeholder: the placeholders locate each content in the
rendering, and the template's assistant frame (generation prompt before the content, end-of-turn
text after it), learnt from a two-message probe, gives the span. The skeleton with the contents put
back must equal the real rendering; a template that alters contents (trims them, say) fails that
check and falls back to rendering prefixes, which the dataset's bound on messages per line keeps
bounded. A default system message the template inserts (SmolLM2 does) is outside every span. Only
assistant turns with weight 1 carry loss; everything else is labelled -100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2

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
    try:
        rendered = tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            tokenize=False,
            add_generation_prompt=generation_prompt,
        )
    except jinja2.TemplateError as exc:  # e.g. a template that raises on roles that do not alternate
        raise TemplateError(f"the chat template refused the conversation: {exc}") from None
    if not isinstance(rendered, str):
        raise TemplateError("the chat template did not render to text")
    return rendered


def _marker(messages: tuple[Message, ...]) -> str:
    """A private-use character that no content holds (a line is bounded, the private-use planes are not)."""
    used = set().union(*(m.content for m in messages))
    for code in (*range(0xE000, 0xF900), *range(0xF0000, 0xFFFFE)):
        if chr(code) not in used:
            return chr(code)
    raise TemplateError("no free placeholder character")  # unreachable with bounded lines


def _placeholder(marker: str, index: int) -> str:
    return f"{marker}{index}{marker}"


def _assistant_frame(tokenizer: Any, marker: str) -> tuple[str, str] | None:
    """(text before, text after) an assistant content, from a user/assistant probe; None when the
    template does not put the content right after the generation prompt."""
    user, answer = Message("user", _placeholder(marker, 0)), Message("assistant", _placeholder(marker, 1))
    asked = _render(tokenizer, (user,), generation_prompt=False)
    prompt = _render(tokenizer, (user,), generation_prompt=True)
    through = _render(tokenizer, (user, answer), generation_prompt=False)
    if not (prompt.startswith(asked) and through.startswith(prompt)):
        return None
    rest = through[len(prompt) :]
    if not rest.startswith(answer.content):
        return None
    return prompt[len(asked) :], rest[len(answer.content) :]


def _spans_by_prefixes(tokenizer: Any, messages: tuple[Message, ...], full: str) -> list[tuple[int, int]]:
    """One rendering per trained turn: quadratic in the line, only for templates that alter contents."""
    spans = []
    for i, message in enumerate(messages):
        if message.role != "assistant" or not message.weight:
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (through.startswith(before) and full.startswith(through)):
            raise TemplateError("the chat template does not render message prefixes as prefixes of the whole")
        spans.append((len(before), len(through)))
    return spans


def _spans_by_skeleton(tokenizer: Any, messages: tuple[Message, ...], full: str) -> list[tuple[int, int]] | None:
    """Linear: one skeleton rendering; None when the template alters contents."""
    marker = _marker(messages)
    frame = _assistant_frame(tokenizer, marker)
    if frame is None:
        return None
    prompt, end_of_turn = frame
    skeleton_messages = tuple(Message(m.role, _placeholder(marker, i), m.weight) for i, m in enumerate(messages))
    skeleton = _render(tokenizer, skeleton_messages, generation_prompt=False)
    pieces, spans, cursor, length = [], [], 0, 0
    for i, message in enumerate(messages):
        placeholder = _placeholder(marker, i)
        at = skeleton.find(placeholder, cursor)
        if at < 0:
            return None
        pieces.append(skeleton[cursor:at])
        length += at - cursor
        cursor = at + len(placeholder)
        if message.role == "assistant" and message.weight:
            if not (skeleton.endswith(prompt, 0, at) and skeleton.startswith(end_of_turn, cursor)):
                return None
            spans.append((length, length + len(message.content) + len(end_of_turn)))
        pieces.append(message.content)
        length += len(message.content)
    pieces.append(skeleton[cursor:])
    if "".join(pieces) != full:
        return None
    return spans


def assistant_spans(tokenizer: Any, messages: tuple[Message, ...]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its trained assistant turns."""
    full = _render(tokenizer, messages, generation_prompt=False)
    if not any(m.role == "assistant" and m.weight for m in messages):
        return full, []
    spans = _spans_by_skeleton(tokenizer, messages, full)
    return full, _spans_by_prefixes(tokenizer, messages, full) if spans is None else spans


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
