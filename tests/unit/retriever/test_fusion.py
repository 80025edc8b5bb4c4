"""Reciprocal rank fusion of a HYBRID search's two candidate lists (``search.fuse``)."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from ragtune_retriever.search import fuse


def test_an_id_in_both_lists_outranks_the_head_of_one():
    fused = fuse([1, 2, 3], [3, 4], rrf_k=60, top_k=10)
    assert [row[0] for row in fused] == [3, 1, 2, 4]  # 2 and 4 are both 2nd of one list: by id
    assert fused[0] == (3, Fraction(1, 63) + Fraction(1, 61), 3, 1)
    assert fused[1] == (1, Fraction(1, 61), 1, 0)  # absent from the keyword list: rank 0
    assert fused[3] == (4, Fraction(1, 62), 0, 2)


def test_equal_sums_tie_by_id_whatever_the_float_rounding():
    # ranks (1, 3) and (3, 1) sum to the same fraction, above (2, 2); the smaller id first either way
    assert [row[0] for row in fuse([9, 5, 7], [7, 5, 9], rrf_k=60, top_k=3)] == [7, 9, 5]
    assert [row[0] for row in fuse([7, 5, 9], [9, 5, 7], rrf_k=60, top_k=3)] == [7, 9, 5]


def test_top_k_and_empty_lists():
    assert fuse([], [], rrf_k=60, top_k=5) == []
    assert [row[0] for row in fuse([4, 3, 2, 1], [], rrf_k=1, top_k=2)] == [4, 3]


@given(
    st.lists(st.integers(0, 50), unique=True, max_size=20),
    st.lists(st.integers(0, 50), unique=True, max_size=20),
    st.integers(1, 100),
    st.integers(1, 30),
)
def test_fusion_is_the_rrf_definition(vector, keyword, rrf_k, top_k):
    fused = fuse(vector, keyword, rrf_k, top_k)
    expected: dict[int, Fraction] = {}
    for ids in (vector, keyword):
        for rank, chunk_id in enumerate(ids, start=1):
            expected[chunk_id] = expected.get(chunk_id, Fraction(0)) + Fraction(1, rrf_k + rank)
    best = sorted(expected, key=lambda i: (-expected[i], i))[:top_k]
    assert [row[0] for row in fused] == best
    for chunk_id, score, vector_rank, keyword_rank in fused:
        assert score == expected[chunk_id]
        assert vector_rank == (vector.index(chunk_id) + 1 if chunk_id in vector else 0)
        assert keyword_rank == (keyword.index(chunk_id) + 1 if chunk_id in keyword else 0)
