"""The evaluation's scoring: SQuAD normalisation, EM and F1 (the official script's answers), and the
retrieval metrics on hand-computed rankings."""

from __future__ import annotations

import math

import pytest

from ragtune_eval.scoring import (
    best_over_answers,
    exact_match,
    hit_at_k,
    ndcg_at_k,
    normalize_answer,
    percentile,
    recall_at_k,
    reciprocal_rank,
    token_f1,
    unique_in_order,
)


def test_normalisation_drops_case_punctuation_articles_and_spaces() -> None:
    assert normalize_answer("  The  Denver Broncos! ") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("theory") == "theory"  # articles only as whole words


def test_exact_match_after_normalisation() -> None:
    assert exact_match("the Denver Broncos.", "Denver Broncos") == 1.0
    assert exact_match("Broncos", "Denver Broncos") == 0.0


def test_token_f1_matches_the_squad_script() -> None:
    # prediction 3 tokens, gold 2 tokens, 2 shared: P=2/3, R=1, F1=0.8
    assert token_f1("Denver Broncos team", "Denver Broncos") == pytest.approx(0.8)
    assert token_f1("Carolina Panthers", "Denver Broncos") == 0.0
    assert token_f1("", "Denver Broncos") == 0.0
    assert token_f1("a the", "the") == 0.0  # both normalise to nothing
    # repeated tokens count as many times as they occur in both
    assert token_f1("red red blue", "red blue blue") == pytest.approx(2 / 3)


def test_best_over_several_references() -> None:
    em, f1 = best_over_answers("Broncos", ["Denver Broncos", "Broncos"])
    assert (em, f1) == (1.0, 1.0)
    em, f1 = best_over_answers("the Denver team", ["Denver Broncos", "Broncos"])
    assert em == 0.0 and f1 == pytest.approx(0.5)
    assert best_over_answers("x", []) == (0.0, 0.0)


def test_hit_and_recall_at_k() -> None:
    ranked = ["d3", "d1", "d7", "d2"]
    assert hit_at_k(ranked, ["d7"], 3) == 1.0
    assert hit_at_k(ranked, ["d2"], 3) == 0.0
    assert recall_at_k(ranked, ["d1", "d2"], 2) == 0.5
    assert recall_at_k(ranked, ["d1", "d2"], 4) == 1.0
    assert recall_at_k(ranked, [], 4) == 0.0


def test_ndcg_at_k_graded() -> None:
    relevance = {"a": 2, "b": 1}
    assert ndcg_at_k(["a", "b", "c"], relevance) == pytest.approx(1.0)
    dcg = 1 / math.log2(2) + 2 / math.log2(3)  # b first, then a
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(["b", "a"], relevance) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(["x"] * 10 + ["a"], relevance, k=10) == 0.0
    assert ndcg_at_k(["a"], {}) == 0.0


def test_reciprocal_rank_and_unique_order() -> None:
    assert reciprocal_rank(["x", "y", "a"], {"a"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x", "y", "a"], {"a"}, k=2) == 0.0
    assert unique_in_order(["d1", "d2", "d1", "d3", "d2"]) == ["d1", "d2", "d3"]


def test_percentile_interpolates() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 95) == 10
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) == pytest.approx(9.55)
    assert math.isnan(percentile([], 50))
