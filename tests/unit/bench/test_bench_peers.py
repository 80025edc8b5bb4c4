"""bench/peers.py's comparison with the better peer per figure and the SQLAlchemy URLs the peers get."""

from __future__ import annotations

import math

import pytest

from bench.peer_systems import sqlalchemy_url
from bench.peers import compare, corpus_subset


def figures(**systems: tuple[float, float, float]) -> dict[str, dict[str, float]]:
    return {name: {"chunks_per_s": c, "p50_ms": p, "ndcg@10": n} for name, (c, p, n) in systems.items()}


def test_each_figure_is_compared_with_the_better_peer_in_that_figure() -> None:
    rows = compare(figures(ragtune=(24.0, 40.0, 0.70), llamaindex=(20.0, 60.0, 0.66), langchain=(10.0, 50.0, 0.68)))
    by_figure = {row["figure"]: row for row in rows}
    assert by_figure["chunks_per_s"]["baseline"] == {"system": "llamaindex", "value": 20.0}  # higher is better
    assert by_figure["p50_ms"]["baseline"] == {"system": "langchain", "value": 50.0}  # lower is better
    assert by_figure["ndcg@10"]["baseline"] == {"system": "langchain", "value": 0.68}
    assert by_figure["chunks_per_s"]["ratio"] == pytest.approx(1.2)
    assert by_figure["p50_ms"]["ratio"] == pytest.approx(0.8)
    assert all(row["passed"] for row in rows)  # 1.2x and 0.8x are on the target; nDCG above both


def test_targets_fail_on_the_wrong_side_and_a_tie_in_quality_is_not_above() -> None:
    rows = compare(figures(ragtune=(23.0, 41.0, 0.68), llamaindex=(20.0, 60.0, 0.66), langchain=(10.0, 50.0, 0.68)))
    assert [row["passed"] for row in rows] == [False, False, False]


def test_a_zero_baseline_gives_no_ratio_and_no_pass() -> None:
    rows = compare(figures(ragtune=(5.0, 40.0, 0.7), llamaindex=(0.0, 0.0, 0.0)))
    assert all(math.isnan(row["ratio"]) and not row["passed"] for row in rows)


def test_sqlalchemy_url_keeps_the_socket_directory_and_names_the_driver() -> None:
    url = "postgresql://postgres:@/postgres?host=/tmp/pg"
    assert sqlalchemy_url(url, "psycopg2") == "postgresql+psycopg2://postgres:@/postgres?host=/tmp/pg"
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        sqlalchemy_url("mysql://x", "psycopg")


def test_a_quick_run_keeps_every_judged_document_then_fills_with_others_in_order() -> None:
    corpus = [(str(i), f"text {i}") for i in range(10)]
    qrels = {"q1": {"7": 1}, "q2": {"3": 1, "9": 0}}
    assert [d for d, _ in corpus_subset(corpus, qrels, 5)] == ["3", "7", "9", "0", "1"]
    assert corpus_subset(corpus, qrels, 0) == corpus  # no limit: the whole corpus
    assert corpus_subset(corpus, qrels, 50) == corpus
