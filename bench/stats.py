"""Small statistics the benchmarks report with their figures: the distribution of paired
differences with a bootstrap confidence interval of the mean, and exact paired tests on
right/wrong outcomes (McNemar's exact test is the sign test on the discordant pairs)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from bench.common import percentile

QUANTILES = (10, 25, 50, 75, 90)


def bootstrap_mean_ci(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 5000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeded: the same input gives the
    same interval)."""
    if not values:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2 * 100
    return (percentile(means, tail), percentile(means, 100 - tail))


def paired_summary(differences: Sequence[float], seed: int = 0) -> dict[str, Any]:
    """p10/p25/p50/p75/p90, the mean and its 95% bootstrap interval of paired differences."""
    low, high = bootstrap_mean_ci(differences, seed=seed)
    return {
        **{f"p{q}": percentile(differences, q) for q in QUANTILES},
        "mean": sum(differences) / len(differences) if differences else math.nan,
        "mean_ci95": [low, high],
        "n": len(differences),
    }


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips (the sign test):
    the probability of an outcome at least as far from n/2 as ``k``, capped at 1."""
    if n == 0:
        return 1.0
    tail = min(k, n - k)
    p = sum(math.comb(n, i) for i in range(tail + 1)) / 2**n
    return min(1.0, 2 * p)


def mcnemar_exact(before: Sequence[bool], after: Sequence[bool]) -> dict[str, Any]:
    """McNemar's exact test on paired right/wrong outcomes of the same questions: only the
    questions whose outcome changed count (``gained``: wrong before, right after; ``lost``: the
    reverse); under no effect each is a fair coin."""
    if len(before) != len(after):
        raise ValueError(f"paired outcomes differ in length: {len(before)} vs {len(after)}")
    gained = sum(1 for b, a in zip(before, after, strict=True) if a and not b)
    lost = sum(1 for b, a in zip(before, after, strict=True) if b and not a)
    return {"gained": gained, "lost": lost, "n": len(before), "p_value": binomial_two_sided(gained, gained + lost)}
