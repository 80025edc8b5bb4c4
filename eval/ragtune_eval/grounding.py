"""Are RAG answers grounded in the passages they cite? Default metrics that need no extra model:

- **citation recall**: of the questions where a retrieved passage holds a gold answer, the share
  whose answer cites such a passage;
- **citation precision**: of the passages answers cite, the share that hold a gold answer;
- **answer support**: the share of an answer's content words found in the passages it cites (0
  when it cites none);
- **abstention when retrieval missed**: of the questions where no retrieved passage holds a gold
  answer, the share of answers that say they don't know.

Citations are the ``[n]`` markers the grounding prompt asks for (1-based passage numbers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ragtune_common.answer_support import CITATION, normalize_answer
from ragtune_common.answer_support import support as support
from ragtune_eval.scoring import mean

_ABSTAIN = re.compile(
    r"\b(i\s+(do\s+not|don'?t)\s+know|(do|does)\s+not\s+(contain|mention|say|provide)|not\s+(mentioned|stated|provided)"
    r"|cannot\s+(answer|be\s+determined|find)|can'?t\s+(answer|find)|no\s+information|unknown|not\s+enough\s+information)\b",
    re.I,
)


def cited(answer: str, passages: int) -> list[int]:
    """The 1-based passage numbers an answer cites, in order, each once, within range."""
    seen: dict[int, None] = {}
    for match in CITATION.finditer(answer):
        number = int(match.group(1))
        if 1 <= number <= passages:
            seen.setdefault(number, None)
    return list(seen)


def holds_answer(passage: str, answers: Sequence[str]) -> bool:
    """Whether the passage contains a gold answer (both normalised as SQuAD does)."""
    text = f" {normalize_answer(passage)} "
    return any(norm and f" {norm} " in text for norm in (normalize_answer(a) for a in answers))


def abstains(answer: str) -> bool:
    return bool(_ABSTAIN.search(answer))


@dataclass(frozen=True)
class Grounding:
    citation_recall: float  # NaN when no question had a gold-holding passage retrieved
    citation_precision: float  # NaN when no answer cited anything
    answer_support: float
    abstention_when_missed: float  # NaN when retrieval never missed
    cited_share: float  # share of answers that cite at least one passage
    questions: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def grounding(answers: Sequence[str], passages: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> Grounding:
    """The four metrics over the questions: each question's answer, the passages it was given
    (in the order they were numbered) and its gold answers."""
    if not len(answers) == len(passages) == len(gold):
        raise ValueError("answers, passages and gold answers must cover the same questions")
    recall, precision, supported, abstained, citing = [], [], [], [], []
    for answer, given, answers_ok in zip(answers, passages, gold, strict=True):
        numbers = cited(answer, len(given))
        citing.append(float(bool(numbers)))
        holding = {i for i, text in enumerate(given, 1) if holds_answer(text, answers_ok)}
        if holding:
            recall.append(float(bool(holding.intersection(numbers))))
        else:
            abstained.append(float(abstains(answer)))
        precision += [float(n in holding) for n in numbers]
        supported.append(support(answer, [given[n - 1] for n in numbers]) if numbers else 0.0)
    return Grounding(mean(recall), mean(precision), mean(supported), mean(abstained), mean(citing), len(answers))
