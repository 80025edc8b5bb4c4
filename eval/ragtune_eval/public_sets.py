"""The public task sets of ``../shared/datasets`` (see its README) as :class:`TaskData`:

- BANKING77 (classification): CSV ``text,category``, ``train.csv`` / ``test.csv``;
- SST-2 (classification): lines ``0 text`` / ``1 text`` (0 = negative), ``stsa.binary.train`` / ``.test``;
- Restaurant-8k (extraction): JSON rows with character spans (end exclusive, a missing
  ``startIndex`` is 0) -> ``{slot: text}``; ``train_0.json`` (or a nested ``train_1..8``) / ``test.json``;
- WNUT-17 (extraction): CoNLL ``token<TAB>BIO-tag``, sentences split by an empty line (or a line
  holding only a tab) -> ``{type: [entity, ...]}``; ``wnut17train.conll`` / ``emerging.test.annotated``;
- GSM8K (answer format): JSONL ``{question, answer}``, answers ending in ``#### N``.

Every parser takes the file's bytes and raises :class:`DatasetError` (with the line or row) for
anything it cannot read."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragtune_eval.dataset import DatasetError, jsonl_rows
from ragtune_eval.task_data import (
    TaskData,
    TaskItem,
    build_task,
    decode,
    parse_csv,
    parse_jsonl,
    parse_task_file,
    read_items,
)

SST2_LABELS = {"0": "negative", "1": "positive"}
WNUT_TYPES = ("corporation", "creative-work", "group", "location", "person", "product")


def parse_sst2(data: bytes, name: str) -> list[TaskItem]:
    items = []
    for number, line in enumerate(decode(data, name).split("\n"), start=1):
        if not line.strip():
            continue
        label, _, text = line.strip().partition(" ")
        if label not in SST2_LABELS or not text.strip():
            raise DatasetError(f"{name}:{number}: expected '0 <text>' or '1 <text>'")
        items.append(TaskItem(str(number), text.strip(), SST2_LABELS[label]))
    return items


def _span(label: Any, text: str, where: str) -> tuple[str, str]:
    if not isinstance(label, dict) or not isinstance(label.get("slot"), str) or not label["slot"]:
        raise DatasetError(f"{where}: every label needs a 'slot' name")
    span = label.get("valueSpan")
    if not isinstance(span, dict):
        raise DatasetError(f"{where}: label {label['slot']!r} needs a 'valueSpan' object")
    start, end = span.get("startIndex", 0), span.get("endIndex")
    if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or isinstance(end, bool):
        raise DatasetError(f"{where}: label {label['slot']!r}: span indexes must be integers")
    if not 0 <= start < end <= len(text):
        raise DatasetError(f"{where}: label {label['slot']!r}: span [{start}, {end}) is outside the text")
    return label["slot"], text[start:end]


def parse_restaurant8k(data: bytes, name: str) -> list[TaskItem]:
    try:
        rows = json.loads(decode(data, name))
    except (json.JSONDecodeError, RecursionError):
        raise DatasetError(f"{name}: not JSON") from None
    if not isinstance(rows, list):
        raise DatasetError(f"{name}: must be a JSON list of rows")
    items = []
    for index, row in enumerate(rows):
        where = f"{name}: row {index}"
        user_input = row.get("userInput") if isinstance(row, dict) else None
        text = user_input.get("text") if isinstance(user_input, dict) else None
        if not isinstance(row, dict) or not isinstance(text, str):
            raise DatasetError(f"{where}: needs userInput.text")
        labels = row.get("labels", [])
        if not isinstance(labels, list):
            raise DatasetError(f"{where}: 'labels' must be a list")
        slots: dict[str, str] = {}
        for label in labels:
            slot, value = _span(label, text, where)
            if slot in slots:
                raise DatasetError(f"{where}: slot {slot!r} labelled twice")
            slots[slot] = value.strip()
        if text.strip():
            items.append(TaskItem(str(index), text.strip(), slots))
    return items


def parse_conll(data: bytes, name: str) -> list[TaskItem]:
    """Sentences of ``token<TAB>tag`` lines; BIO tags -> entity strings (tokens joined by spaces)
    grouped by type; the input is the sentence's tokens joined by spaces."""
    items: list[TaskItem] = []
    tokens: list[str] = []
    entities: dict[str, list[str]] = {}
    current: tuple[str, list[str]] | None = None
    start = 1

    def close_entity() -> None:
        nonlocal current
        if current is not None:
            entities.setdefault(current[0], []).append(" ".join(current[1]))
            current = None

    def close_sentence(next_start: int) -> None:
        nonlocal tokens, entities, start
        close_entity()
        if tokens:
            items.append(TaskItem(str(start), " ".join(tokens), entities))
        tokens, entities, start = [], {}, next_start

    for number, line in enumerate(decode(data, name).split("\n"), start=1):
        if not line.strip():
            close_sentence(number + 1)
            continue
        token, sep, tag = line.rstrip("\r").partition("\t")
        tag = tag.strip()
        if not sep or not token.strip() or not (tag == "O" or (tag[:2] in ("B-", "I-") and tag[2:])):
            raise DatasetError(f"{name}:{number}: expected 'token<TAB>tag' with a BIO tag (O, B-type, I-type)")
        tokens.append(token.strip())
        if tag == "O":
            close_entity()
        elif tag.startswith("B-") or current is None or current[0] != tag[2:]:
            close_entity()  # an I- that starts an entity (no B- before it) is read as a B-
            current = (tag[2:], [token.strip()])
        else:
            current[1].append(token.strip())
    close_sentence(0)
    return items


def parse_gsm8k(data: bytes, name: str) -> list[TaskItem]:
    items = []
    for number, row in jsonl_rows(decode(data, name), name):
        where = f"{name}:{number}"
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("question", "answer")):
            raise DatasetError(f"{where}: needs 'question' and 'answer' strings")
        if "####" not in row["answer"]:
            raise DatasetError(f"{where}: the answer does not end in '#### <number>'")
        items.append(TaskItem(str(number), row["question"].strip(), row["answer"].strip()))
    return items


def _banking77(data: bytes, name: str) -> list[TaskItem]:
    return parse_csv(data, name)


def _jsonl_items(data: bytes, name: str) -> list[TaskItem]:
    return parse_jsonl(data, name)[0]


# name -> (task kind, parser, default train file, default test file)
PUBLIC_SETS: dict[str, tuple[str, Callable[[bytes, str], list[TaskItem]], str, str]] = {
    "banking77": ("classification", _banking77, "train.csv", "test.csv"),
    "sst2": ("classification", parse_sst2, "stsa.binary.train", "stsa.binary.test"),
    "restaurant8k": ("extraction", parse_restaurant8k, "train_0.json", "test.json"),
    "wnut17": ("extraction", parse_conll, "wnut17train.conll", "emerging.test.annotated"),
    "gsm8k": ("answer", parse_gsm8k, "train.jsonl", "test.jsonl"),
}


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise DatasetError(f"no such file: {path}")
    return path.read_bytes()


def load_public_set(name: str, folder: Path, train_file: str = "", test_file: str = "") -> TaskData:
    """The set ``name`` from its folder: its default train and test files, or the ones named."""
    if name not in PUBLIC_SETS:
        raise DatasetError(f"unknown public set {name!r}: choose from {', '.join(PUBLIC_SETS)}")
    kind, parse, default_train, default_test = PUBLIC_SETS[name]
    train_path, test_path = folder / (train_file or default_train), folder / (test_file or default_test)
    train = parse(_read(train_path), str(train_path))
    test = [TaskItem(f"test-{item.id}", item.input, item.target) for item in parse(_read(test_path), str(test_path))]
    data = build_task(kind, name, train, test)
    if name == "wnut17":  # every entity type, also those a subsample's gold never names
        data.schema = {t: "list" for t in WNUT_TYPES} | data.schema
    return data


def load_task(path: Path, public: str = "", kind: str = "auto", test_path: Path | None = None) -> TaskData:
    """A public set (``public`` names it; ``path`` is its folder, ``test_path`` another held-out
    file in it) or a user's task file (``.csv``/``.jsonl``, with an optional held-out file of the
    same shape)."""
    if public:
        return load_public_set(public, path, test_file=test_path.name if test_path else "")
    if not path.is_file():
        raise DatasetError(f"no such file: {path}")
    data = parse_task_file(path.read_bytes(), str(path), kind)
    if test_path is None:
        return data
    held, _ = read_items(_read(test_path), str(test_path))
    test = [TaskItem(f"test-{item.id}", item.input, item.target) for item in held]
    return build_task(data.kind, data.name, data.items, test, data.instructions)
