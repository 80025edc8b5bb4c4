"""Task datasets in the shapes a team has them: CSV ``text,label``, JSONL ``{input, label}`` or
``{input, output}`` (an output string, or a JSON object for extraction) and chat ``{messages}``
rows. Every bad row is a :class:`DatasetError` naming the file and its line.

A task is one of :data:`TASK_KINDS`: ``classification`` (the output is one label of a closed
set), ``extraction`` (the output is a JSON object of fields) or ``answer`` (a worked answer whose
final answer is read by a declared extraction, e.g. GSM8K's ``#### N``)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune_eval.dataset import DatasetError, jsonl_rows

TASK_KINDS = ("classification", "extraction", "answer")
TEXT_COLUMNS = ("text", "input", "sentence")
LABEL_COLUMNS = ("label", "category", "intent")
MAX_LABELS = 500


@dataclass(frozen=True)
class TaskItem:
    id: str
    input: str
    # classification: the label; answer: the worked answer; extraction: the gold object (field ->
    # a string or a list of strings)
    target: Any

    def output(self) -> str:
        """What a perfect answer writes (the assistant turn of a training example)."""
        if isinstance(self.target, dict):
            return json.dumps(self.target, ensure_ascii=False)
        return str(self.target)


@dataclass
class TaskData:
    kind: str
    name: str
    items: list[TaskItem]  # the training pool (and the held-out pool when ``test`` is empty)
    test: list[TaskItem] = field(default_factory=list)  # a separate held-out file, when there is one
    labels: tuple[str, ...] = ()  # classification: the label set, sorted
    schema: dict[str, str] = field(default_factory=dict)  # extraction: field -> "string" or "list"
    instructions: str = ""  # the data's own instructions (a chat set's system message), if any


def decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def _column(header: list[str], choices: tuple[str, ...], name: str) -> int:
    lowered = [h.strip().lower() for h in header]
    for choice in choices:
        if choice in lowered:
            return lowered.index(choice)
    raise DatasetError(f"{name}:1: the header needs a column named one of {', '.join(choices)} (got {header})")


def parse_csv(data: bytes, name: str) -> list[TaskItem]:
    """CSV with a header naming a text column (text, input, sentence) and a label column (label,
    category, intent); quoted fields may hold commas and line breaks."""
    reader = csv.reader(io.StringIO(decode(data, name), newline=""))
    items: list[TaskItem] = []
    try:
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{name}: empty file")
        text_at, label_at = _column(header, TEXT_COLUMNS, name), _column(header, LABEL_COLUMNS, name)
        line = reader.line_num + 1
        for row in reader:
            where = f"{name}:{line}"
            line = reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DatasetError(f"{where}: {len(row)} fields, the header has {len(header)}")
            text, label = row[text_at].strip(), row[label_at].strip()
            if not text or not label:
                raise DatasetError(f"{where}: empty {'text' if not text else 'label'}")
            items.append(TaskItem(str(len(items) + 1), text, label))
    except csv.Error as exc:
        raise DatasetError(f"{name}:{reader.line_num}: not CSV ({exc})") from None
    return items


def _chat_item(messages: Any, where: str) -> tuple[str, str, str]:
    """(input, output, system message) of a chat row: the final assistant turn is the output, the
    single user turn before it the input (a longer conversation becomes a transcript)."""
    if not isinstance(messages, list) or len(messages) < 2:
        raise DatasetError(f"{where}: 'messages' must be a list of at least a user and an assistant turn")
    for turn in messages:
        if not isinstance(turn, dict) or turn.get("role") not in ("system", "user", "assistant"):
            raise DatasetError(f"{where}: every message needs a role: system, user or assistant")
        if not isinstance(turn.get("content"), str):
            raise DatasetError(f"{where}: every message needs a 'content' string")
    *prompt, last = messages
    if last["role"] != "assistant" or not last["content"].strip():
        raise DatasetError(f"{where}: the last message must be a non-empty assistant turn")
    system = "\n".join(t["content"] for t in prompt if t["role"] == "system").strip()
    turns = [t for t in prompt if t["role"] != "system"]
    if not any(t["role"] == "user" for t in turns):
        raise DatasetError(f"{where}: needs a user turn before the assistant's")
    if len(turns) == 1:
        text = turns[0]["content"].strip()
    else:
        text = "\n".join(f"{t['role']}: {t['content'].strip()}" for t in turns)
    if not text:
        raise DatasetError(f"{where}: empty user turn")
    return text, last["content"].strip(), system


def parse_jsonl(data: bytes, name: str) -> tuple[list[TaskItem], str]:
    """JSONL rows ``{input, label}``, ``{input, output}`` (a string, or a JSON object for
    extraction) or ``{messages: [...]}``, an optional ``id`` each. Returns the items and the
    system message the chat rows share (their instructions; rows that differ are refused)."""
    items: list[TaskItem] = []
    system: str | None = None
    for number, row in jsonl_rows(decode(data, name), name):
        where = f"{name}:{number}"
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: each line must be a JSON object")
        row_id = row.get("id", len(items) + 1)
        if not isinstance(row_id, str | int) or isinstance(row_id, bool):
            raise DatasetError(f"{where}: 'id' must be a string or an integer")
        if "messages" in row:
            chat_input, chat_output, own_system = _chat_item(row["messages"], where)
            if system is not None and own_system != system:
                raise DatasetError(f"{where}: every row must share one system message (the task's instructions)")
            system = own_system
            items.append(TaskItem(str(row_id), chat_input, chat_output))
            continue
        text: Any = row.get("input", row.get("text"))
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{where}: needs a non-empty 'input' string (or 'messages')")
        target: Any = row.get("label", row.get("output"))
        if isinstance(target, str) and target.strip():
            target = target.strip()
        elif not isinstance(target, dict):
            raise DatasetError(f"{where}: needs a non-empty 'label' or 'output' string, or an 'output' object")
        items.append(TaskItem(str(row_id), text.strip(), target))
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{name}: row ids are not unique")
    return items, system or ""


def _field_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "string"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "list"
    return None


def extraction_target(target: Any, where: str) -> dict[str, Any]:
    """A gold object: a JSON object (or its text) whose values are strings or lists of strings."""
    if isinstance(target, str):
        try:
            target = json.loads(target)
        except (json.JSONDecodeError, RecursionError):
            raise DatasetError(f"{where}: an extraction output must be a JSON object") from None
    if not isinstance(target, dict):
        raise DatasetError(f"{where}: an extraction output must be a JSON object")
    for key, value in target.items():
        if _field_kind(value) is None:
            raise DatasetError(f"{where}: field {key!r} must be a string or a list of strings")
    return target


def build_task(
    kind: str, name: str, items: list[TaskItem], test: list[TaskItem] | None = None, instructions: str = ""
) -> TaskData:
    """Checks the items fit ``kind`` and derives the label set or the schema from them."""
    if kind not in TASK_KINDS:
        raise DatasetError(f"{name}: unknown task type {kind!r}: choose from {', '.join(TASK_KINDS)}")
    test = test or []
    if not items:
        raise DatasetError(f"{name}: no examples")
    every = [*items, *test]
    if kind == "extraction":
        every = [TaskItem(i.id, i.input, extraction_target(i.target, f"{name}: item {i.id}")) for i in every]
        items, test = every[: len(items)], every[len(items) :]
        schema: dict[str, str] = {}
        for item in every:
            for key, value in item.target.items():
                found = _field_kind(value)
                if schema.setdefault(key, found or "string") != found:
                    raise DatasetError(f"{name}: item {item.id}: field {key!r} is a {found}, elsewhere a {schema[key]}")
        return TaskData(kind, name, items, test, schema=schema, instructions=instructions)
    for item in every:
        if not isinstance(item.target, str):
            raise DatasetError(f"{name}: item {item.id}: a {kind} output must be a string")
    labels: tuple[str, ...] = ()
    if kind == "classification":
        labels = tuple(sorted({item.target for item in every}))
        if len(labels) < 2 or len(labels) > MAX_LABELS:
            raise DatasetError(f"{name}: a classification task needs 2 to {MAX_LABELS} labels, found {len(labels)}")
    return TaskData(kind, name, items, test, labels=labels, instructions=instructions)


def guess_kind(items: list[TaskItem]) -> str:
    """extraction when outputs are JSON objects, answer when they end in ``#### N``, else classification."""
    if any(isinstance(i.target, dict) for i in items) or all(str(i.target).lstrip().startswith("{") for i in items):
        return "extraction"
    if all("####" in str(i.target) for i in items):
        return "answer"
    return "classification"


def read_items(data: bytes, name: str) -> tuple[list[TaskItem], str]:
    """The rows of a ``.csv`` or ``.jsonl`` task file, and the instructions its chat rows share."""
    if name.lower().endswith(".csv"):
        return parse_csv(data, name), ""
    if name.lower().endswith(".jsonl"):
        return parse_jsonl(data, name)
    raise DatasetError(f"{name}: a task file ends in .csv or .jsonl")


def parse_task_file(data: bytes, name: str, kind: str = "auto") -> TaskData:
    """A user's task file: ``.csv`` (classification) or ``.jsonl``; ``kind`` "auto" guesses."""
    items, instructions = read_items(data, name)
    return build_task(guess_kind(items) if kind == "auto" else kind, name, items, instructions=instructions)


def load_task_file(path: Path, kind: str = "auto") -> TaskData:
    if not path.is_file():
        raise DatasetError(f"no such file: {path}")
    return parse_task_file(path.read_bytes(), str(path), kind)
