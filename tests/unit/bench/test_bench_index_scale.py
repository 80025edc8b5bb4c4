"""index_scale's synthetic corpus: reproducible blocks, unit vectors near a real passage, Zipf text,
keyword queries without the stop-word-like head, and the step sizes it accepts."""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import pytest

from bench.index_scale import _steps
from bench.index_scale_data import QUERY_SKIP_RANKS, VOCABULARY, SyntheticCorpus, _word


@pytest.fixture(scope="module")
def corpus() -> SyntheticCorpus:
    rng = np.random.default_rng(7)
    base = rng.normal(size=(50, 384)).astype(np.float32)
    return SyntheticCorpus(base / np.linalg.norm(base, axis=1, keepdims=True), sigma=0.025, words_per_chunk=48, mix=1)


def test_blocks_are_reproducible_and_distinct(corpus: SyntheticCorpus) -> None:
    assert np.array_equal(corpus.vectors(1000, 10), corpus.vectors(1000, 10))
    assert corpus.texts(1000, 3) == corpus.texts(1000, 3)
    assert not np.array_equal(corpus.vectors(0, 10), corpus.vectors(1000, 10))


def test_vectors_are_unit_length_and_near_one_base_passage(corpus: SyntheticCorpus) -> None:
    vectors = corpus.vectors(0, 200)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    nearest = (vectors @ corpus.base.T).max(axis=1)
    assert nearest.min() > 0.8  # noise 0.025 x sqrt(384) ~ 0.49 in norm: cosine ~ 0.9 to its passage
    assert np.abs(vectors @ vectors.T - np.eye(200)).max() < 0.999  # no two chunks are the same vector


def test_mixed_vectors_lie_between_two_base_passages(corpus: SyntheticCorpus) -> None:
    mixed = SyntheticCorpus(corpus.base, sigma=0.01, words_per_chunk=48, mix=2)
    vectors = mixed.vectors(0, 300)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ corpus.base.T
    two = np.argsort(-similarity, axis=1)[:, :2]
    captured = []
    for vector, pair in zip(vectors, two, strict=True):
        basis, _ = np.linalg.qr(corpus.base[pair].T)  # the plane of its two nearest passages
        captured.append(np.linalg.norm(basis.T @ vector))
    assert min(captured) > 0.9  # all but the noise (0.01 x sqrt(384) ~ 0.2 before renormalising)
    # not copies of one passage: many chunks sit well away from every single passage
    assert np.mean(similarity.max(axis=1) < 0.9) > 0.3


def test_words_are_distinct_and_text_follows_zipf(corpus: SyntheticCorpus) -> None:
    assert len({_word(r) for r in range(VOCABULARY)}) == VOCABULARY
    counts = Counter(" ".join(corpus.texts(0, 2000)).split())
    assert counts[_word(0)] > 50 * max(counts[_word(1000)], 1)
    assert all(len(text.split()) == 48 for text in corpus.texts(0, 5))


def test_keyword_queries_skip_the_commonest_words(corpus: SyntheticCorpus) -> None:
    head = {_word(r) for r in range(QUERY_SKIP_RANKS)}
    queries = corpus.keyword_queries(50)
    assert len(queries) == 50 and len(set(queries)) == 50
    assert not head & {word for query in queries for word in query.split()}


def test_steps_end_at_the_chunk_count_in_whole_documents() -> None:
    args = argparse.Namespace(chunks=100_000, scale_steps="10000,100000,300000")
    assert _steps(args) == [10_000, 100_000]
    with pytest.raises(ValueError, match="multiples"):
        _steps(argparse.Namespace(chunks=1500, scale_steps=""))
