"""The knowledge set of the freshness measurement and its counterfactual edit.

A fact is a QA item whose answer is a span of its passage. Editing the fact replaces that span
(and nothing else) by a counterfactual value of the same kind, taken from another question's answer
(a year for a year, a number for a number, a date for a date, a name for a name, a lower-case phrase
for a phrase); the value becomes the new gold answer. The choice is seeded per item: the same items,
pool and seed give the same edits.

A counterfactual is never the old answer: it shares no word with any of the item's gold answers
(after SQuAD normalisation) but those of a common form ("$# million"), and it appears in neither
the passage nor the question, so a passage that says the new value says it only where the old one
was, and an answer that holds it did not copy it from the question.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ragtune_eval.dataset import QAItem
from ragtune_eval.scoring import normalize_answer

SHAPES = ("year", "number", "date", "name", "phrase")
MAX_ANSWER_WORDS = 5
MAX_ANSWER_CHARS = 40
_YEAR = re.compile(r"(1[0-9]|20)[0-9]{2}")
_DIGIT = re.compile(r"[0-9]")
_MONTH = re.compile(r"\b(January|February|March|April|May|June|July|August|September|October|November|December)\b")
_LINKING = frozenset({"of", "the", "and", "de", "von", "van", "for", "in", "on", "at", "&"})
_NUMBER_WORD = re.compile(
    r"\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen"
    r"|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand"
    r"|million|billion|trillion|dozen|half|once|twice)\b",
    re.IGNORECASE,
)
_NUMERAL = re.compile(r"[0-9]+(?:[.,][0-9]+)*")


@dataclass(frozen=True)
class FactEdit:
    """One edited fact: the question, its gold before and after, its passage before and after."""

    id: str
    question: str
    old_answers: tuple[str, ...]
    new_answer: str
    old_context: str
    new_context: str
    start: int  # where the old answer's span began in the old passage (and the new one's in the new)
    shape: str

    @property
    def old_item(self) -> QAItem:
        return QAItem(self.id, self.question, self.old_answers, self.old_context)

    @property
    def new_item(self) -> QAItem:
        return QAItem(self.id, self.question, (self.new_answer,), self.new_context)


def answer_shape(answer: str) -> str:
    """What kind of value an answer is (one of :data:`SHAPES`)."""
    text = answer.strip()
    if _YEAR.fullmatch(text):
        return "year"
    if _MONTH.search(text):
        return "date"
    if _DIGIT.search(text) or _NUMBER_WORD.search(text):
        return "number"
    words = text.split()
    if words and words[0][:1].isupper() and all(w[:1].isupper() or w.lower() in _LINKING for w in words):
        return "name"
    return "phrase"


def answer_template(answer: str) -> str:
    """The answer's form within its shape: numerals, number words and months as placeholders for
    numbers and dates ("$465 million" -> "$# million", "January 7, 2016" -> "<month> #, #"), the
    number of words for names and phrases. A counterfactual of the same form reads most naturally."""
    shape = answer_shape(answer)
    if shape in ("name", "phrase"):
        return f"{len(answer.split())} words"
    text = _MONTH.sub("<month>", answer.strip())
    return _NUMBER_WORD.sub("#", _NUMERAL.sub("#", text)).lower()


def span_starts(context: str, answer: str) -> list[int]:
    """Where ``answer`` occurs in ``context`` as a whole (not inside a longer word or number)."""
    if not answer:
        return []
    pattern = re.compile(rf"(?<![\w]){re.escape(answer)}(?![\w])")
    return [m.start() for m in pattern.finditer(context)]


def editable(item: QAItem) -> bool:
    """An item whose first gold answer is short and stands exactly once in its passage, and not in
    its question: replacing that one span changes the fact and leaves no copy of the old value."""
    answer = item.answers[0] if item.answers else ""
    if not answer or len(answer) > MAX_ANSWER_CHARS or len(answer.split()) > MAX_ANSWER_WORDS:
        return False
    if not normalize_answer(answer) or _holds(item.question, answer):
        return False
    return len(span_starts(item.context, answer)) == 1


def _holds(text: str, value: str) -> bool:
    """``value`` appears in ``text`` as whole words, after SQuAD normalisation."""
    needle = normalize_answer(value)
    return bool(needle) and f" {needle} " in f" {normalize_answer(text)} "


def _words(text: str) -> set[str]:
    return set(normalize_answer(text).split())


def acceptable(item: QAItem, candidate: str) -> bool:
    """``candidate`` may replace ``item``'s answer: it shares no word with any gold answer but the
    words of a common form ("million" in "# million", "since" in "since #"; never a numeral), and
    is in neither the passage nor the question."""
    words = _words(candidate)
    old = item.answers[0]
    form = answer_template(old)
    allowed = _words(form.replace("#", " ")) if answer_template(candidate) == form else set()
    if not words or any((words & _words(answer)) - allowed for answer in item.answers):
        return False
    return not _holds(item.context, candidate) and not _holds(item.question, candidate)


def answer_pool(items: Iterable[QAItem]) -> dict[str, list[str]]:
    """Distinct first answers of ``items`` that could stand in for a fact, by shape, sorted."""
    pool: dict[str, set[str]] = {shape: set() for shape in SHAPES}
    for item in items:
        answer = item.answers[0].strip() if item.answers else ""
        if answer and len(answer) <= MAX_ANSWER_CHARS and len(answer.split()) <= MAX_ANSWER_WORDS:
            pool[answer_shape(answer)].add(answer)
    return {shape: sorted(values) for shape, values in pool.items()}


def counterfactual(item: QAItem, pool: dict[str, list[str]], seed: int) -> str | None:
    """A seeded counterfactual for ``item``'s answer from ``pool``: the same shape, preferably the
    same form (:func:`answer_template`), else the same number of words; None when the pool has no
    acceptable value of the shape."""
    old = item.answers[0]
    candidates = [c for c in pool.get(answer_shape(old), []) if acceptable(item, c)]
    same_form = [c for c in candidates if answer_template(c) == answer_template(old)]
    same_length = [c for c in candidates if len(c.split()) == len(old.split())]
    chosen = same_form or same_length or candidates
    if not chosen:
        return None
    return random.Random(f"counterfactual:{seed}:{item.id}").choice(chosen)


def edit_passage(context: str, start: int, old: str, new: str) -> str:
    """``context`` with the span ``old`` at ``start`` replaced by ``new``; every other character kept."""
    if context[start : start + len(old)] != old:
        raise ValueError(f"the passage does not hold {old!r} at {start}")
    return context[:start] + new + context[start + len(old) :]


def edit_fact(item: QAItem, new_answer: str) -> FactEdit:
    old = item.answers[0]
    starts = span_starts(item.context, old)
    if len(starts) != 1:
        raise ValueError(f"item {item.id}: its answer {old!r} stands {len(starts)} times in its passage")
    new_context = edit_passage(item.context, starts[0], old, new_answer)
    return FactEdit(
        item.id, item.question, item.answers, new_answer, item.context, new_context, starts[0], answer_shape(old)
    )


def plan_edits(items: Sequence[QAItem], pool: dict[str, list[str]], count: int, seed: int) -> list[FactEdit]:
    """``count`` edited facts: a seeded order of the editable items, one per passage (two edits of
    one passage would collide), each with its counterfactual, none whose edited passage still
    holds one of its gold answers. Fewer when the items run out."""
    order = sorted(items, key=lambda item: item.id)
    random.Random(f"freshness:{seed}").shuffle(order)
    edits: list[FactEdit] = []
    passages: set[str] = set()
    for item in order:
        if len(edits) == count:
            break
        if item.context_id in passages or not editable(item):
            continue
        new = counterfactual(item, pool, seed)
        if new is None:
            continue
        edit = edit_fact(item, new)
        if any(_holds(edit.new_context, answer) for answer in item.answers):
            continue  # another reference answer stands elsewhere in the passage: the old fact would remain
        passages.add(item.context_id)
        edits.append(edit)
    return edits


def mentions(prediction: str, answer: str) -> float:
    """1.0 when the answer's normalised words stand in the prediction as a whole phrase: the fact
    the answer gives (the small model answers in sentences, so exact match misses right answers)."""
    return float(_holds(prediction, answer))
