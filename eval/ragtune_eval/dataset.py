"""Question-answering datasets (SQuAD JSON, or JSONL of ``{question, answers, context?}``), their
seeded train / held-out split, and BEIR retrieval datasets (corpus, queries, qrels)."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DatasetError(ValueError):
    """A dataset that cannot be read; the message names the file and, where it can, the line."""


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    answers: tuple[str, ...]
    context: str = ""

    @property
    def context_id(self) -> str:
        """Stable id of the context text (questions that share a passage share it)."""
        return hashlib.sha256(self.context.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Split:
    train: list[QAItem]
    test: list[QAItem]
    # the first questions of `train`, also asked after training to measure the train/held-out gap
    train_sample: list[QAItem]

    def contexts(self) -> dict[str, str]:
        """Every distinct non-empty context of the split, by context id, in a stable order."""
        found: dict[str, str] = {}
        for item in [*self.test, *self.train]:
            if item.context.strip():
                found.setdefault(item.context_id, item.context)
        return found


def _answers(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise DatasetError(f"{where}: answers must be a string or a list")
    texts = [a["text"] if isinstance(a, dict) and "text" in a else a for a in value]
    if not all(isinstance(t, str) for t in texts):
        raise DatasetError(f"{where}: answers must be strings or {{'text': ...}} objects")
    return tuple(dict.fromkeys(t.strip() for t in texts if t.strip()))


def _squad(data: dict[str, Any], name: str) -> list[QAItem]:
    items = []
    for a, article in enumerate(_list(data.get("data"), f"{name}: data")):
        for p, paragraph in enumerate(_list(_field(article, "paragraphs", f"{name}: data[{a}]"), name)):
            where = f"{name}: data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", where)
            if not isinstance(context, str):
                raise DatasetError(f"{where}: 'context' must be a string")
            for qa in _list(_field(paragraph, "qas", where), where):
                if not isinstance(qa, dict) or not isinstance(qa.get("question"), str) or "id" not in qa:
                    raise DatasetError(f"{where}: every question needs an 'id' and a 'question' string")
                answers = _answers(qa.get("answers", []), f"{name}: question {qa.get('id')}")
                if answers and not qa.get("is_impossible"):
                    items.append(QAItem(str(qa["id"]), qa["question"].strip(), answers, context))
    return items


def _field(value: Any, key: str, where: str) -> Any:
    if not isinstance(value, dict) or key not in value:
        raise DatasetError(f"{where}: needs a '{key}' field")
    return value[key]


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise DatasetError(f"{where}: must be a list")
    return value


def jsonl_rows(text: str, name: str) -> Iterator[tuple[int, Any]]:
    """(line number, the line's JSON value) for every non-empty line (``\n`` ends a line, as a
    file reads); a line that is not JSON (NaN and Infinity are not) is a :class:`DatasetError`
    naming ``name:line``."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            yield number, json.loads(line, parse_constant=not_json_constant)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not JSON ({exc.msg})") from None
        except ValueError as exc:
            raise DatasetError(f"{where}: not JSON ({exc})") from None
        except RecursionError:
            raise DatasetError(f"{where}: nested too deeply") from None


def not_json_constant(constant: str) -> Any:
    """``parse_constant`` of :func:`json.loads`: NaN and Infinity are not JSON (nor storable as jsonb)."""
    raise ValueError(f"{constant} is not a JSON number")


def _jsonl(text: str, name: str) -> list[QAItem]:
    items = []
    for number, row in jsonl_rows(text, name):
        where = f"{name}:{number}"
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip():
            raise DatasetError(f"{where}: needs a non-empty 'question' string")
        context = row.get("context") or ""
        if not isinstance(context, str):
            raise DatasetError(f"{where}: 'context' must be a string")
        answers = _answers(row.get("answers", row.get("answer", [])), where)
        if not answers:
            raise DatasetError(f"{where}: needs at least one answer")
        items.append(QAItem(str(row.get("id", number)), row["question"].strip(), answers, context))
    return items


def load_qa(path: Path) -> list[QAItem]:
    """The QA dataset in the file at ``path`` (see :func:`parse_qa`)."""
    if not path.is_file():
        raise DatasetError(f"no such file: {path}")
    return parse_qa(path.read_bytes(), str(path))


def parse_qa(data: bytes, name: str) -> list[QAItem]:
    """SQuAD JSON (``{"data": [{"paragraphs": [{"context", "qas"}]}]}``) or, when ``name`` ends in
    ``.jsonl``, JSONL; unanswerable SQuAD 2 questions are left out. Errors name ``name`` (and the line)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    if name.lower().endswith(".jsonl"):
        items = _jsonl(text, name)
    else:
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{name}: not JSON ({exc.msg}); JSONL files must end in .jsonl") from None
        if not isinstance(parsed, dict) or "data" not in parsed:
            raise DatasetError(f"{name}: not SQuAD JSON (no top-level 'data')")
        items = _squad(parsed, name)
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{name}: question ids are not unique")
    return items


def split_dataset(items: list[QAItem], train: int, test: int, seed: int, train_sample: int) -> Split:
    """Seeded: the same items, sizes and seed give the same split. Held-out questions come first
    in the shuffled order, so growing ``train`` never moves a question out of the test set."""
    if train + test > len(items):
        raise DatasetError(f"asked for {train} train + {test} test questions, the dataset has {len(items)}")
    order = list(items)
    random.Random(seed).shuffle(order)
    test_items, train_items = order[:test], order[test : test + train]
    return Split(train_items, test_items, train_items[: min(train_sample, train)])


@dataclass
class BeirDataset:
    corpus: dict[str, str]  # document id -> title + text
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)  # query id -> {document id: grade}


def load_beir(folder: Path, split: str = "test") -> BeirDataset:
    """A BEIR folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path):
        if not needed.is_file():
            raise DatasetError(f"not a BEIR folder: {needed} is missing")
    corpus = {}
    with (folder / "corpus.jsonl").open(encoding="utf-8") as f:
        for row in map(json.loads, f):
            title = (row.get("title") or "").strip()
            corpus[str(row["_id"])] = f"{title}\n\n{row['text']}" if title else row["text"]
    with (folder / "queries.jsonl").open(encoding="utf-8") as f:
        queries = {str(row["_id"]): row["text"] for row in map(json.loads, f)}
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    qrels = {qid: rel for qid, rel in qrels.items() if qid in queries}
    return BeirDataset(corpus, queries, qrels)
