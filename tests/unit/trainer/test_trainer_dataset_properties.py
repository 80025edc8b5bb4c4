"""Property tests of the dataset validator: any bytes at all give a report (never an exception),
each non-blank line is either an example or exactly one error naming that line, valid chat lines
come back unchanged (and survive being stored), and the per-line bounds hold."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtune_trainer.datasets import (
    MAX_REPORTED_ERRORS,
    Example,
    LineLimits,
    read_dataset,
    validate_jsonl,
    write_dataset,
)

LIMITS = LineLimits(max_chars=400, max_messages=6)


def _count(example: Example) -> tuple[int, int]:
    total = sum(len(m.content) + 1 for m in example.messages)
    return total, sum(len(m.content) for m in example.messages if m.role == "assistant" and m.weight)


def _validate(data: bytes, limits: LineLimits = LIMITS):
    return validate_jsonl(data, None, _count, max_tokens=10**9, min_examples=0, limits=limits)


def _non_blank_lines(data: bytes) -> list[int]:
    return [n for n, raw in enumerate(data.split(b"\n"), start=1) if raw.strip()]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool", ""]), "content": st.text(max_size=30)},
    optional={"weight": st.sampled_from([0, 1, 2, True, None, "1"])},
)
records = st.one_of(
    st.fixed_dictionaries({"messages": st.lists(message, max_size=8)}),
    st.fixed_dictionaries({"prompt": st.text(max_size=20), "completion": st.text(max_size=20)}),
    json_values,
)
lines = st.one_of(
    records.map(lambda r: json.dumps(r).encode()),
    st.binary(max_size=60).filter(lambda b: b"\n" not in b),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),  # deep nesting
    st.integers(390, 2000).map(lambda n: json.dumps({"prompt": "p" * n, "completion": "c"}).encode()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines, max_size=12))
def test_every_line_is_an_example_or_one_error_naming_it(chunks: list[bytes]) -> None:
    data = b"\n".join(chunks)
    result = _validate(data)
    numbered = _non_blank_lines(data)
    errors = [e.line for e in result.errors]
    assert len(errors) == len(set(errors)), "one error per line"
    assert sorted([e.line for e in result.examples] + errors) == numbered
    for error in result.errors:
        assert error.reason
    for example in result.examples:
        assert len(example.messages) <= LIMITS.max_messages
        assert sum(len(m.content) for m in example.messages) <= LIMITS.max_chars
        assert any(m.role == "assistant" for m in example.messages)


chat_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(str.strip)


@st.composite
def valid_chats(draw: st.DrawFn) -> list[dict[str, object]]:
    turns = draw(st.integers(1, 2))
    messages: list[dict[str, object]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(chat_text)})
    for _ in range(turns):
        messages.append({"role": "user", "content": draw(chat_text)})
        messages.append({"role": "assistant", "content": draw(chat_text), "weight": draw(st.sampled_from([0, 1]))})
    return messages


@settings(max_examples=150, deadline=None)
@given(st.lists(valid_chats(), min_size=1, max_size=6), st.integers(0, 2))
def test_valid_chats_come_back_unchanged_and_survive_storage(chats: list[list[dict[str, object]]], blanks: int) -> None:
    data = (b"\n" * (blanks + 1)).join(json.dumps({"messages": m}).encode() for m in chats)
    result = _validate(data, LineLimits(max_chars=10_000, max_messages=6))
    assert result.valid, result.errors
    got = [[{"role": m.role, "content": m.content, "weight": m.weight} for m in e.messages] for e in result.examples]
    want = [[{"weight": 1 if m["role"] == "assistant" else 0, **m} for m in chat] for chat in chats]
    assert got == want
    path = Path("/tmp") / f"ragtune-hypothesis-{id(data)}.jsonl"
    try:
        write_dataset(path, result.examples)
        assert read_dataset(path) == result.examples
    finally:
        path.unlink(missing_ok=True)


@settings(max_examples=60, deadline=None)
@given(st.integers(LIMITS.max_messages + 1, 50), st.integers(0, 3))
def test_bounds_are_reported_on_their_line(messages: int, line_before: int) -> None:
    too_many = json.dumps({"messages": [{"role": "user", "content": "q"}] * messages})
    limits = LineLimits(max_chars=2_000, max_messages=LIMITS.max_messages)
    too_long = json.dumps({"prompt": "p" * (limits.max_chars + 1), "completion": "c"})
    data = ("\n" * line_before + too_many + "\n" + too_long).encode()
    found = {(e.line, e.field): e.reason for e in _validate(data, limits).errors}
    assert found[(line_before + 1, "messages")] == f"too many messages: {messages}, at most {limits.max_messages}"
    assert found[(line_before + 2, "")].startswith("too long:")


def test_error_report_is_capped() -> None:
    result = _validate(b"x\n" * (MAX_REPORTED_ERRORS + 50))
    assert len(result.errors) == MAX_REPORTED_ERRORS
