"""Pure scoring functions: SQuAD answer normalisation, exact match and token F1 (the official
SQuAD v1.1 evaluation script's definitions), retrieval hit@k / recall@k / nDCG@k / MRR (the
BEIR / pytrec_eval definitions), and percentiles."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from ragtune_common.answer_support import normalize_answer as normalize_answer  # the SQuAD normalisation


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = Counter(predicted) & Counter(expected)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_over_answers(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) against the best-matching reference answer, as SQuAD scores several references."""
    if not answers:
        return 0.0, 0.0
    return max(exact_match(prediction, a) for a in answers), max(token_f1(prediction, a) for a in answers)


def hit_at_k(ranked: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """1 when any relevant id is among the first k."""
    wanted = set(relevant)
    return float(any(doc in wanted for doc in ranked[:k]))


def recall_at_k(ranked: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """Share of the relevant ids found among the first k (0 when nothing is relevant)."""
    wanted = set(relevant)
    return len(wanted.intersection(ranked[:k])) / len(wanted) if wanted else 0.0


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int = 10) -> float:
    """Graded gain, log2(rank + 1) discount, ideal ranking from the judgements (pytrec_eval)."""
    dcg = sum(max(relevance.get(doc, 0), 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted((r for r in relevance.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(rank + 2) for rank, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def reciprocal_rank(ranked: Sequence[str], relevant: Iterable[str], k: int | None = None) -> float:
    """1 / rank of the first relevant id (within the first k), else 0."""
    wanted = set(relevant)
    for rank, doc in enumerate(ranked[:k] if k else ranked, start=1):
        if doc in wanted:
            return 1.0 / rank
    return 0.0


def unique_in_order(ids: Iterable[str]) -> list[str]:
    """Ids in rank order, each at its first (best) position: chunk hits -> document ranking."""
    return list(dict.fromkeys(ids))


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan
