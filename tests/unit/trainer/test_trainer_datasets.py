"""Dataset validation: every bad line reported with its number, field and reason."""

from __future__ import annotations

import json

from ragtune_trainer.datasets import DatasetFormat, Example, read_dataset, validate_jsonl, write_dataset


def _count(example: Example) -> tuple[int, int]:
    """Stand-in tokenizer: one token per word, trained = words of weighted assistant turns."""
    total = sum(len(m.content.split()) + 2 for m in example.messages)
    trained = sum(len(m.content.split()) + 1 for m in example.messages if m.role == "assistant" and m.weight)
    return total, trained


def _validate(lines: list[str], declared: DatasetFormat | None = None, max_tokens: int = 50, min_examples: int = 1):
    return validate_jsonl(("\n".join(lines) + "\n").encode(), declared, _count, max_tokens, min_examples)


def _chat(*turns: tuple[str, str], **extra: object) -> str:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in turns], **extra})


def test_valid_chat_counts_tokens_and_keeps_line_numbers():
    result = _validate(
        [_chat(("user", "hi there"), ("assistant", "hello")), "", _chat(("user", "a"), ("assistant", "b"))]
    )
    assert result.valid and result.format is DatasetFormat.CHAT
    assert [e.line for e in result.examples] == [1, 3]
    assert result.token_count == 13 and result.trainable_token_count == 4 and result.max_example_tokens == 7


def test_every_bad_line_is_reported():
    lines = [
        "not json",
        json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]}),
        json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant"}]}),
        _chat(("assistant", "first"), ("user", "x"), ("assistant", "y")),
        _chat(("user", "x"), ("system", "late"), ("assistant", "y")),
        _chat(("user", "word " * 60), ("assistant", "y")),
        json.dumps(
            {"messages": [{"role": "user", "content": "x", "weight": 1}, {"role": "assistant", "content": "y"}]}
        ),
        json.dumps({"messages": []}),
        json.dumps({"something": "else"}),
        b"\xff\xfe".decode("latin-1"),
    ]
    result = _validate(lines)
    got = [(e.line, e.field, e.reason.split(":")[0]) for e in result.errors]
    assert got == [
        (1, "", "not JSON"),
        (2, "messages[1].role", "unknown role 'robot'"),
        (3, "messages[1].content", "missing or not a string"),
        (4, "messages", "the first message after the system message must be from the user"),
        (5, "messages[1].role", "a system message may only come first"),
        (6, "", "too long"),
        (7, "messages[0].weight", "must be 0 or 1, and only on assistant messages"),
        (8, "messages", "must be a non-empty list"),
        (9, "", 'needs "messages" (chat) or "prompt" and "completion"'),
        (10, "", "not JSON"),
        (0, "", "too few examples"),
    ]
    assert not result.valid


def test_prompt_completion_becomes_a_chat_that_trains_on_the_completion():
    result = _validate([json.dumps({"prompt": "2+2=", "completion": "4"})], DatasetFormat.PROMPT_COMPLETION)
    assert result.valid
    (example,) = result.examples
    assert [(m.role, m.weight) for m in example.messages] == [("user", 0), ("assistant", 1)]
    declared_chat = _validate([json.dumps({"prompt": "2+2=", "completion": "4"})], DatasetFormat.CHAT)
    assert declared_chat.errors[0].reason == "a prompt_completion line in a chat dataset"
    empty = _validate([json.dumps({"prompt": "x", "completion": " "})])
    assert (empty.errors[0].line, empty.errors[0].field) == (1, "completion")


def test_weight_zero_turns_are_kept_but_not_trained():
    line = json.dumps(
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y z", "weight": 0}]}
    )
    result = _validate([line])
    assert result.valid and result.trainable_token_count == 0
    assert result.examples[0].messages[1].weight == 0


def test_written_dataset_reads_back(tmp_path):
    result = _validate([_chat(("system", "s"), ("user", "héllo"), ("assistant", "ok"))] * 2)
    path = tmp_path / "d" / "x.jsonl"
    size = write_dataset(path, result.examples)
    assert size == path.stat().st_size and read_dataset(path) == result.examples
    assert [p.name for p in path.parent.iterdir()] == ["x.jsonl"], "no temp file left behind"
