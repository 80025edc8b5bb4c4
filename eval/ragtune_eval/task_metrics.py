"""Scores per task type, per answer (so the paired tests and bootstrap intervals apply: every row's
``score`` is its 0-1 contribution to the arm's headline figure) and summed over an arm's answers.

- classification: the answer's first line, normalised (case, ``_``/``-`` as spaces, outer quotes
  and punctuation), must equal one label of the set: ``score`` is exact-label accuracy; also a
  lenient reading (the answer names exactly one label, anywhere); summed: accuracy, macro-F1 over
  the labels (gold or predicted), the share of answers that are a label, and the most-confused
  (gold, predicted) pairs.
- extraction: the answer parsed as one JSON object (a fenced block or text around the object is
  tolerated); the object and the gold one as sets of (field, normalised value) pairs: ``score`` is
  the item's F1 (1 when both are empty and the answer is an object, 0 when it is not), also
  exact-object match, parses, validates (known fields only, values of the schema's kind); summed:
  per-field and micro precision / recall / F1.
- answer: the final answer after the declared mark (GSM8K: ``#### N``): its first number,
  normalised (``1,000`` = ``1000.0``), or its text: ``score`` is strict accuracy; also whether
  the mark was there and a lenient accuracy (the last number of the answer)."""

from __future__ import annotations

import json
import re
from collections import Counter
from decimal import Decimal, InvalidOperation
from typing import Any

from ragtune_eval.scoring import mean

NO_LABEL = "(no label)"
_LABEL_PREFIX = re.compile(r"^(?:label|intent|category|class|answer|sentiment)\s*[:=-]\s*", re.I)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_NON_WORD = re.compile(r"[^A-Za-z0-9_\-]+")
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def normalize_text(text: str) -> str:
    text = re.sub(r"[_\-]+", " ", text.lower())
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip("\"'`*.,;:!?()[] ").strip()


# -- classification --------------------------------------------------------------------------------


def read_label(prediction: str, labels: tuple[str, ...]) -> str | None:
    """The label the answer names (its first non-empty line, normalised), or None."""
    first = next((line for line in prediction.splitlines() if line.strip()), "")
    wanted = normalize_text(_LABEL_PREFIX.sub("", first.strip().strip("*`\"' ")))
    by_form = {normalize_text(label): label for label in labels}
    return by_form.get(wanted)


def mentioned_label(prediction: str, labels: tuple[str, ...]) -> str | None:
    """The one label the answer names anywhere (as whole words, normalised); None for none or several."""

    def words(text: str) -> str:
        return " " + normalize_text(_NON_WORD.sub(" ", text)) + " "

    text = words(prediction)
    named = [label for label in labels if words(label).strip() and words(label) in text]
    return named[0] if len(named) == 1 else None


def score_classification(prediction: str, gold: str, labels: tuple[str, ...]) -> dict[str, Any]:
    predicted = read_label(prediction, labels)
    return {
        "predicted": predicted,
        "score": float(predicted == gold),
        "valid": float(predicted is not None),
        "lenient": float(mentioned_label(prediction, labels) == gold),
    }


def _f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def macro_f1(pairs: list[tuple[str, str | None]]) -> float | None:
    """Macro-F1 in percent over (gold, predicted) pairs: the mean F1 of every label that is gold or
    predicted (an answer that is no label counts against its gold label's recall); None for none."""
    true_positive: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    gold: Counter[str] = Counter()
    for g, p in pairs:
        gold[g] += 1
        if p is not None:
            predicted[p] += 1
            true_positive[p] += p == g
    labels = set(gold) | set(predicted)
    if not labels:
        return None
    f1s = [_f1(true_positive[x], predicted[x] - true_positive[x], gold[x] - true_positive[x])[2] for x in labels]
    return 100 * mean(f1s)


def classification_summary(rows: list[dict[str, Any]], confused: int = 5) -> dict[str, Any]:
    pairs = [(r["gold"], r["predicted"]) for r in rows]
    found = macro_f1(pairs)
    mistakes = Counter((g, p or NO_LABEL) for g, p in pairs if g != p)
    return {
        "accuracy": round(100 * mean([r["score"] for r in rows]), 2) if rows else None,
        "macro_f1": round(found, 2) if found is not None else None,
        "valid_share": round(mean([r["valid"] for r in rows]), 4) if rows else None,
        "lenient_accuracy": round(100 * mean([r.get("lenient", r["score"]) for r in rows]), 2) if rows else None,
        "most_confused": [{"gold": g, "predicted": p, "count": n} for (g, p), n in mistakes.most_common(confused)],
    }


# -- extraction ------------------------------------------------------------------------------------


def parse_object(text: str) -> dict[str, Any] | None:
    """The answer's JSON object: the whole text, a fenced block, or the text from the first ``{``
    to the last ``}``; None when none of them is a JSON object."""
    candidates = [text.strip(), *(m.strip() for m in _FENCE.findall(text))]
    if "{" in text and "}" in text:
        candidates.append(text[text.index("{") : text.rindex("}") + 1])
    for candidate in candidates:
        try:
            found = json.loads(candidate)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(found, dict):
            return found
    return None


def _values(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if v is None or isinstance(v, dict | list):
            continue
        text = normalize_text(v if isinstance(v, str) else json.dumps(v))
        if text:
            out.append(text)
    return out


def field_pairs(obj: dict[str, Any]) -> set[tuple[str, str]]:
    return {(str(key), value) for key, raw in obj.items() for value in _values(raw)}


def conforms(obj: dict[str, Any], schema: dict[str, str]) -> bool:
    """Only the schema's fields, each a string or a list of strings as the schema says."""
    for key, value in obj.items():
        kind = schema.get(key)
        if kind == "string" and not isinstance(value, str):
            return False
        if kind == "list" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return False
        if kind is None:
            return False
    return True


def score_extraction(prediction: str, gold: dict[str, Any], schema: dict[str, str]) -> dict[str, Any]:
    found = parse_object(prediction)
    predicted, expected = field_pairs(found or {}), field_pairs(gold)
    counts: dict[str, list[int]] = {}
    for key, _ in predicted | expected:
        counts.setdefault(key, [0, 0, 0])
    for key, _ in predicted & expected:
        counts[key][0] += 1
    for key, _ in predicted - expected:
        counts[key][1] += 1
    for key, _ in expected - predicted:
        counts[key][2] += 1
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    return {
        "predicted": found,
        # both empty is right only for an answer that is an object: prose is no "nothing to extract"
        "score": float(found is not None) if not predicted and not expected else _f1(tp, fp, fn)[2],
        "exact": float(found is not None and predicted == expected),
        "parsed": float(found is not None),
        "valid": float(found is not None and conforms(found, schema)),
        "fields": counts,
    }


def _prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    precision, recall, f1 = _f1(tp, fp, fn)
    return {"precision": round(100 * precision, 2), "recall": round(100 * recall, 2), "f1": round(100 * f1, 2)}


def extraction_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, list[int]] = {}
    for row in rows:
        for key, counts in row["fields"].items():
            kept = totals.setdefault(key, [0, 0, 0])
            for i in range(3):
                kept[i] += counts[i]
    micro = [sum(c[i] for c in totals.values()) for i in range(3)]
    return {
        "item_f1": round(100 * mean([r["score"] for r in rows]), 2) if rows else None,
        "exact": round(100 * mean([r["exact"] for r in rows]), 2) if rows else None,
        "parse_share": round(mean([r["parsed"] for r in rows]), 4) if rows else None,
        "valid_share": round(mean([r["valid"] for r in rows]), 4) if rows else None,
        "micro": _prf(*micro),
        "per_field": {key: {**_prf(*c), "gold": c[0] + c[2]} for key, c in sorted(totals.items())},
    }


# -- answer format ---------------------------------------------------------------------------------


def after_mark(text: str, mark: str) -> str | None:
    """The first line after the last ``mark``; None when the answer has no mark."""
    at = text.rfind(mark)
    if at < 0:
        return None
    rest = text[at + len(mark) :].strip()
    return rest.splitlines()[0].strip() if rest else ""


def normalize_final(text: str) -> str:
    """The first number of a final answer in canonical form (``$1,000.50 total`` -> ``1000.5``); a
    final answer without a number, normalised as text."""
    found = _NUMBER.search(text)
    if found is None:
        return normalize_text(text)
    try:
        number = Decimal(found.group().replace(",", "").replace("$", ""))
    except InvalidOperation:
        return normalize_text(text)
    return format(number.normalize(), "f") if number != number.to_integral() else str(int(number))


def last_number(text: str) -> str | None:
    numbers = _NUMBER.findall(text)
    return normalize_final(numbers[-1]) if numbers else None


def score_answer(prediction: str, gold: str, mark: str) -> dict[str, Any]:
    gold_final = after_mark(gold, mark)
    expected = normalize_final(gold_final if gold_final is not None else gold)
    final = after_mark(prediction, mark)
    return {
        "predicted": final,
        "expected": expected,
        "score": float(final is not None and normalize_final(final) == expected),
        "format_ok": float(final is not None),
        "lenient": float(last_number(prediction) == expected),
    }


def answer_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "accuracy": round(100 * mean([r["score"] for r in rows]), 2) if rows else None,
        "format_share": round(mean([r["format_ok"] for r in rows]), 4) if rows else None,
        "lenient_accuracy": round(100 * mean([r["lenient"] for r in rows]), 2) if rows else None,
    }


# -- per task --------------------------------------------------------------------------------------

HEADLINE = {"classification": "accuracy", "extraction": "item F1", "answer": "accuracy"}
BINARY = {"classification": True, "extraction": False, "answer": True}


def summary(kind: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    if kind == "classification":
        return classification_summary(rows)
    if kind == "extraction":
        return extraction_summary(rows)
    return answer_summary(rows)
