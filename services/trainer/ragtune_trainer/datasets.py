"""Training data: parse and validate OpenAI-style JSONL (chat or prompt/completion) line by line,
and store a valid dataset as normalised chat JSONL that keeps each example's original line number.

Validation never stops at the first problem: every bad line is reported with its number, the field
at fault and the reason, so a user fixes a file in one round. Each line is bounded (characters,
messages, JSON nesting) before the work that grows with it, so no line costs more than the bounds allow.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")
MAX_REPORTED_ERRORS = 1000


@dataclass(frozen=True)
class LineLimits:
    """Bounds on one dataset line, checked before it is parsed further or tokenized."""

    max_chars: int = 200_000
    max_messages: int = 200


class DatasetFormat(StrEnum):
    CHAT = "chat"
    PROMPT_COMPLETION = "prompt_completion"


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    weight: int = 1  # only assistant turns with weight 1 carry loss


@dataclass(frozen=True)
class Example:
    line: int
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class LineError:
    line: int  # 1-based; 0 = the whole file
    field: str
    reason: str


@dataclass
class ValidationResult:
    format: DatasetFormat | None
    examples: list[Example] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    token_count: int = 0
    trainable_token_count: int = 0
    max_example_tokens: int = 0

    @property
    def valid(self) -> bool:
        return not self.errors


class LineInvalid(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _detect(record: dict[str, Any]) -> DatasetFormat:
    if "messages" in record:
        return DatasetFormat.CHAT
    if "prompt" in record or "completion" in record:
        return DatasetFormat.PROMPT_COMPLETION
    raise LineInvalid("", 'needs "messages" (chat) or "prompt" and "completion"')


def _chat_messages(record: dict[str, Any], max_messages: int) -> tuple[Message, ...]:
    raw = record.get("messages")
    if not isinstance(raw, list) or not raw:
        raise LineInvalid("messages", "must be a non-empty list")
    if len(raw) > max_messages:
        raise LineInvalid("messages", f"too many messages: {len(raw)}, at most {max_messages}")
    messages = []
    for i, item in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise LineInvalid(where, "must be an object")
        role = item.get("role")
        if role is None:
            raise LineInvalid(f"{where}.role", "missing role")
        if role not in ROLES:
            raise LineInvalid(f"{where}.role", f"unknown role {role!r}: use system, user or assistant")
        content = item.get("content")
        if not isinstance(content, str):
            raise LineInvalid(f"{where}.content", "missing or not a string")
        if role == "system" and i != 0:
            raise LineInvalid(f"{where}.role", "a system message may only come first")
        weight = item.get("weight", 1 if role == "assistant" else 0)
        if "weight" in item and (role != "assistant" or weight not in (0, 1) or isinstance(weight, bool)):
            raise LineInvalid(f"{where}.weight", "must be 0 or 1, and only on assistant messages")
        if role == "assistant" and not content.strip():
            raise LineInvalid(f"{where}.content", "empty assistant turn")
        messages.append(Message(role, content, int(weight)))
    roles = [m.role for m in messages]
    if "user" not in roles or "assistant" not in roles:
        raise LineInvalid("messages", "needs at least one user and one assistant message")
    first = next(m.role for m in messages if m.role != "system")
    if first != "user":
        raise LineInvalid("messages", "the first message after the system message must be from the user")
    return tuple(messages)


def _prompt_completion(record: dict[str, Any]) -> tuple[Message, ...]:
    prompt, completion = record.get("prompt"), record.get("completion")
    if not isinstance(prompt, str) or not prompt.strip():
        raise LineInvalid("prompt", "missing, empty or not a string")
    if not isinstance(completion, str) or not completion.strip():
        raise LineInvalid("completion", "missing, empty or not a string")
    return (Message("user", prompt, 0), Message("assistant", completion, 1))


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            yield number, raw


TokenCounter = Callable[[Example], tuple[int, int]]
"""(tokens, trainable tokens) of one example rendered with the base model's chat template."""


def _parse_line(raw: bytes, limits: LineLimits) -> Any:
    if len(raw) > 4 * limits.max_chars:  # UTF-8 takes at most 4 bytes a character: over the limit for sure
        raise LineInvalid("", f"too long: over {limits.max_chars} characters")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LineInvalid("", "not UTF-8") from None
    if len(text) > limits.max_chars:
        raise LineInvalid("", f"too long: {len(text)} characters, at most {limits.max_chars}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineInvalid("", f"not JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise LineInvalid("", "not JSON this service reads: nested too deeply") from None


def validate_jsonl(
    data: bytes,
    declared: DatasetFormat | None,
    count_tokens: TokenCounter,
    max_tokens: int,
    min_examples: int,
    limits: LineLimits | None = None,
) -> ValidationResult:
    """Parse every line; report each bad one. Examples longer than ``max_tokens`` are errors."""
    limits = limits or LineLimits()
    result = ValidationResult(format=declared)
    for number, raw in _lines(data):
        try:
            record = _parse_line(raw, limits)
            if not isinstance(record, dict):
                raise LineInvalid("", "must be a JSON object")
            kind = _detect(record)
            if result.format is None:
                result.format = kind
            elif kind is not result.format:
                raise LineInvalid("", f"a {kind.value} line in a {result.format.value} dataset")
            messages = (
                _chat_messages(record, limits.max_messages)
                if kind is DatasetFormat.CHAT
                else _prompt_completion(record)
            )
            example = Example(number, messages)
            tokens, trainable = count_tokens(example)
            if tokens > max_tokens:
                raise LineInvalid("", f"too long: {tokens} tokens, over the limit of {max_tokens}")
        except LineInvalid as exc:
            result.errors.append(LineError(number, exc.field, exc.reason))
            continue
        result.examples.append(example)
        result.token_count += tokens
        result.trainable_token_count += trainable
        result.max_example_tokens = max(result.max_example_tokens, tokens)
    if len(result.examples) < min_examples:
        result.errors.append(
            LineError(0, "", f"too few examples: {len(result.examples)} valid, at least {min_examples} needed")
        )
    del result.errors[MAX_REPORTED_ERRORS:]
    return result


def _example_record(example: Example) -> dict[str, Any]:
    return {
        "line": example.line,
        "messages": [{"role": m.role, "content": m.content, "weight": m.weight} for m in example.messages],
    }


def write_dataset(path: Path, examples: list[Example]) -> int:
    """Write normalised chat JSONL atomically (temp file + rename); returns its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for example in examples:
                out.write(json.dumps(_example_record(example), ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.stat().st_size


def read_dataset(path: Path) -> list[Example]:
    """Read a dataset written by :func:`write_dataset`."""
    examples = []
    with path.open(encoding="utf-8") as source:
        for raw in source:
            record = json.loads(raw)
            messages = tuple(Message(m["role"], m["content"], int(m["weight"])) for m in record["messages"])
            examples.append(Example(int(record["line"]), messages))
    return examples
