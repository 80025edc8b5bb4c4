"""The verdict over the runs of one eval: for each grader, each run's pass rate with its bootstrap
interval, and every pair of runs compared on the items they share (paired bootstrap on the
difference, McNemar's exact test on the discordant items), with a recommendation in words.

Items are paired by their content (the same item in two runs, whatever its position), so runs over
the same data compare item by item even when they were given in another order. Pure and seeded:
the same grades give the same figures."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from ragtune_eval.significance import LEVEL, RESAMPLES, bootstrap_mean, compare_paired


@dataclass
class RunGrades:
    """One run's graded items: item key -> grader name -> passed (1.0/0.0); errored items count as
    failed for every grader."""

    run_id: str
    name: str
    model: str
    passed: dict[str, dict[str, float]] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)


def item_key(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True, ensure_ascii=False)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def compare_runs(
    runs: list[RunGrades], criteria: list[str], level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    summaries = []
    for run in runs:
        rates = {}
        for name in criteria:
            scores = [grades.get(name, 0.0) for grades in run.passed.values()]
            interval = bootstrap_mean(scores, level=level, resamples=resamples, seed=seed) if scores else None
            rates[name] = interval.as_dict() if interval else None
        p50, p95 = _percentile(run.latencies_s, 0.5), _percentile(run.latencies_s, 0.95)
        summaries.append(
            {
                "run_id": run.run_id,
                "name": run.name,
                "model": run.model,
                "items": len(run.passed),
                "pass_rate": rates,
                "latency_p50_ms": round(1000 * p50, 1) if p50 is not None else None,
                "latency_p95_ms": round(1000 * p95, 1) if p95 is not None else None,
                "prompt_tokens_mean": round(statistics.fmean(run.prompt_tokens), 1) if run.prompt_tokens else None,
            }
        )
    comparisons = []
    for i, baseline in enumerate(runs):
        for candidate in runs[i + 1 :]:
            shared = sorted(set(baseline.passed) & set(candidate.passed))
            for name in criteria:
                if not shared:
                    continue
                paired = compare_paired(
                    name,
                    baseline.run_id,
                    [baseline.passed[k].get(name, 0.0) for k in shared],
                    candidate.run_id,
                    [candidate.passed[k].get(name, 0.0) for k in shared],
                    binary=True,
                    level=level,
                    resamples=resamples,
                    seed=seed,
                )
                comparisons.append({**paired.as_dict(), "criterion": name, "items": len(shared)})
    return {
        "level": level,
        "runs": summaries,
        "comparisons": comparisons,
        "recommendation": recommend(summaries, comparisons, criteria),
    }


def recommend(summaries: list[dict[str, Any]], comparisons: list[dict[str, Any]], criteria: list[str]) -> str:
    """Which run to use, on the first grader: the best pass rate, and whether it is better than
    each other run beyond noise ("no detectable difference" where the interval covers zero)."""
    if not summaries or not criteria:
        return "No graded runs to compare."
    name = criteria[0]
    rated = [s for s in summaries if s["pass_rate"].get(name)]
    if not rated:
        return "No graded runs to compare."
    best = max(rated, key=lambda s: s["pass_rate"][name]["value"])
    said = []
    for other in rated:
        if other is best:
            continue
        found = next(
            (
                c
                for c in comparisons
                if c["criterion"] == name and {c["baseline"], c["candidate"]} == {best["run_id"], other["run_id"]}
            ),
            None,
        )
        if found is None:
            said.append(f"no items in common with {other['name']}")
        elif found["significant"]:
            gap = abs(found["difference"]["value"])
            said.append(f"better than {other['name']} by {100 * gap:.1f} points ({found['items']} items)")
        else:
            said.append(f"no detectable difference from {other['name']} ({found['items']} items)")
    rate = 100 * best["pass_rate"][name]["value"]
    head = f"On '{name}', {best['name']} ({best['model'] or 'given samples'}) passes {rate:.1f}%"
    return head + (": " + "; ".join(said) if said else "") + "."
