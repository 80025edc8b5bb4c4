"""Confidence intervals and paired tests: deterministic for a seed, right on cases with known
answers, and the properties every interval must have."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtune_eval.significance import (
    bootstrap_mean,
    bootstrap_statistic,
    compare_paired,
    compare_paired_statistic,
    mcnemar_exact,
    verdict,
)


def test_interval_is_seeded_and_contains_the_mean() -> None:
    rng = random.Random(1)
    values = [rng.random() for _ in range(300)]
    first, again = bootstrap_mean(values, seed=7), bootstrap_mean(values, seed=7)
    assert first == again
    assert first.low < first.value < first.high
    # the normal approximation of the mean's interval, for comparison: close for n = 300
    sd = math.sqrt(sum((v - first.value) ** 2 for v in values) / (len(values) - 1))
    half = 1.96 * sd / math.sqrt(len(values))
    assert first.high - first.low == pytest.approx(2 * half, rel=0.15)


def test_constant_scores_have_a_zero_width_interval() -> None:
    interval = bootstrap_mean([0.5] * 50)
    assert interval.low == interval.value == interval.high == 0.5 and interval.excludes_zero()
    assert not bootstrap_mean([0.0] * 50).excludes_zero()  # no difference at all


def test_mcnemar_known_values() -> None:
    # 10 discordant pairs, all one way: two-sided exact p = 2 / 2**10
    baseline, candidate = [0.0] * 10 + [1.0] * 5, [1.0] * 10 + [1.0] * 5
    p_value, discordant = mcnemar_exact(baseline, candidate)
    assert discordant == (0, 10) and p_value == pytest.approx(2 / 1024)
    assert mcnemar_exact([1.0, 0.0], [1.0, 0.0]) == (1.0, (0, 0))
    balanced, _ = mcnemar_exact([1.0, 0.0] * 5, [0.0, 1.0] * 5)
    assert balanced == 1.0


def test_a_clear_improvement_is_significant_and_noise_is_not() -> None:
    rng = random.Random(3)
    baseline = [float(rng.random() < 0.3) for _ in range(300)]
    better = [1.0 if b else float(rng.random() < 0.5) for b in baseline]  # right where baseline was, and more
    clear = compare_paired("em", "rag", baseline, "rag+ft", better, binary=True)
    assert clear.significant and clear.difference.low > 0 and clear.p_value is not None and clear.p_value < 0.001
    noise = [float(rng.random() < 0.3) for _ in range(300)]
    unclear = compare_paired("em", "rag", baseline, "other", noise, binary=True, seed=1)
    assert unclear.difference.low < unclear.difference.value < unclear.difference.high
    assert unclear.as_dict()["test"] == "mcnemar-exact"


def test_paired_scores_need_the_same_questions() -> None:
    with pytest.raises(ValueError, match="same questions"):
        compare_paired("f1", "a", [0.1, 0.2], "b", [0.3])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=60), st.integers(0, 5))
def test_interval_bounds_lie_within_the_data(values: list[float], seed: int) -> None:
    interval = bootstrap_mean(values, resamples=200, seed=seed)
    assert min(values) - 1e-12 <= interval.low <= interval.high <= max(values) + 1e-12


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 1.0]), min_size=1, max_size=40),
    st.lists(st.sampled_from([0.0, 1.0]), min_size=40, max_size=40),
)
def test_mcnemar_is_symmetric_and_a_probability(a: list[float], b: list[float]) -> None:
    b = b[: len(a)]
    p_ab, (x, y) = mcnemar_exact(a, b)
    p_ba, (y2, x2) = mcnemar_exact(b, a)
    assert 0 < p_ab <= 1 and p_ab == p_ba and (x, y) == (x2, y2)


def test_the_verdict_names_each_significant_metric_and_its_direction() -> None:
    """As in the acceptance run: rag+ft vs ft, F1 +1.8 [-1.1, +4.4] but EM -2.3 [-4.0, -0.7] (McNemar
    p 0.016): not "no detectable difference", which would hide the EM loss."""
    lower_em = {"f1": {"difference": 1.75, "significant": False}, "em": {"difference": -2.33, "significant": True}}
    assert verdict(lower_em) == "EM lower"
    both = {"f1": {"difference": -2.8, "significant": True}, "em": {"difference": 2.3, "significant": True}}
    assert verdict(both) == "F1 lower, EM higher"
    neither = {"f1": {"difference": 0.4, "significant": False}, "em": {"difference": 0.0, "significant": False}}
    assert verdict(neither) == "no detectable difference"


def test_a_whole_sample_statistic_gets_a_seeded_interval_around_its_value() -> None:
    values = [float(i % 3 == 0) for i in range(40)]

    def share(indices: Sequence[int]) -> float:
        return 100 * sum(values[i] for i in indices) / len(indices)

    found = bootstrap_statistic(len(values), share, resamples=500, seed=3)
    as_mean = bootstrap_mean([100 * v for v in values], resamples=500, seed=3)
    assert found.value == pytest.approx(as_mean.value)
    assert found.low <= found.value <= found.high and found.high - found.low > 10
    assert found == bootstrap_statistic(len(values), share, resamples=500, seed=3)
    assert math.isnan(bootstrap_statistic(0, share).value)


def test_a_paired_statistic_sees_the_same_items_on_both_sides() -> None:
    baseline = [float(i % 2) for i in range(30)]
    candidate = [1.0] * 30

    def share_of(values: list[float]) -> Callable[[Sequence[int]], float]:
        return lambda indices: 100 * sum(values[i] for i in indices) / len(indices)

    same = compare_paired_statistic("m", "a", share_of(baseline), "b", share_of(baseline), 30, resamples=300)
    assert (same.difference.low, same.difference.high) == (0.0, 0.0) and not same.significant
    better = compare_paired_statistic("m", "a", share_of(baseline), "b", share_of(candidate), 30, resamples=300)
    assert better.difference.value == 50.0 and better.significant and better.p_value is None
