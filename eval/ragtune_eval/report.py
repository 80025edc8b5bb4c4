"""The report of a QA evaluation: per-arm figures computed from the stored answers with their
bootstrap confidence intervals, paired comparisons of the arms on the same questions, groundedness
of the RAG arms, the costs, a Markdown table, an HTML page with charts, and a recommendation that
speaks only of differences whose interval excludes zero."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ragtune_eval.chart import ChartPoint, quality_latency_svg
from ragtune_eval.grounding import grounding
from ragtune_eval.html_report import to_html
from ragtune_eval.markdown_report import to_markdown
from ragtune_eval.scoring import mean, percentile
from ragtune_eval.significance import (
    LEVEL,
    RESAMPLES,
    Interval,
    PairedComparison,
    bootstrap_mean,
    compare_paired,
)

CHART_NAME = "chart.svg"
HTML_NAME = "report.html"

OVERFIT_GAP = 10.0  # F1 points by which a fine-tuned arm's train/held-out gap may exceed its counterpart's
SMALL_SAMPLE = 100  # held-out questions below which the report warns about noise


def percent(values: list[float]) -> float | None:
    return round(100 * mean(values), 2) if values else None


def _finite(value: float | int) -> float | int | None:
    """Rounded for the report; None for an undefined figure (NaN), which JSON cannot hold."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value


def rounded(found: Interval) -> dict[str, float]:
    """An interval's bounds as the report keeps them (percent points, two decimals) and its level."""
    return {"low": round(found.low, 2), "high": round(found.high, 2), "level": found.level}


def interval(values: list[float], level: float, resamples: int, seed: int) -> dict[str, float] | None:
    """The mean of 0-1 scores in percent with its bootstrap interval, rounded for the report."""
    if not values:
        return None
    return rounded(bootstrap_mean([100 * v for v in values], level=level, resamples=resamples, seed=seed))


def _arm_figures(rows: list[dict[str, Any]], level: float, resamples: int, seed: int) -> dict[str, Any]:
    test = [r for r in rows if r["split"] == "test"]
    train = [r for r in rows if r["split"] == "train"]
    with_retrieval = [r for r in test if "hit_at_k" in r]
    figures: dict[str, Any] = {
        "questions": len(test),
        "em": percent([r["em"] for r in test]),
        "f1": percent([r["f1"] for r in test]),
        "em_ci": interval([r["em"] for r in test], level, resamples, seed),
        "f1_ci": interval([r["f1"] for r in test], level, resamples, seed),
        "short": {
            "em": percent([r.get("em_short", r["em"]) for r in test]),
            "f1": percent([r.get("f1_short", r["f1"]) for r in test]),
            "em_ci": interval([r.get("em_short", r["em"]) for r in test], level, resamples, seed),
            "f1_ci": interval([r.get("f1_short", r["f1"]) for r in test], level, resamples, seed),
        },
        **serving_figures(test),
        "train_sample": {
            "questions": len(train),
            "em": percent([r["em"] for r in train]),
            "f1": percent([r["f1"] for r in train]),
        },
    }
    if with_retrieval:
        figures["retrieval"] = {
            "questions": len(with_retrieval),
            "hit_at_k": round(mean([r["hit_at_k"] for r in with_retrieval]), 4),
            "recall_at_k": round(mean([r["recall_at_k"] for r in with_retrieval]), 4),
            "answer_in_passages": round(mean([r["answer_in_passages"] for r in with_retrieval]), 4),
        }
    grounded = [r for r in test if "passages" in r]
    if grounded:
        found = grounding(
            [r["prediction"] for r in grounded], [r["passages"] for r in grounded], [r["answers"] for r in grounded]
        )
        figures["grounding"] = {
            k: (round(v, 4) if isinstance(v, float) and not math.isnan(v) else v) for k, v in found.as_dict().items()
        }
        figures["grounding"] = {
            k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures["grounding"].items()
        }
    train_f1, test_f1 = figures["train_sample"]["f1"], figures["f1"]
    figures["train_minus_test_f1"] = (
        round(train_f1 - test_f1, 2) if train_f1 is not None and test_f1 is not None else None
    )
    return figures


def serving_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency p50 / p95 (ms), output tokens/s and mean prompt / output tokens of answered rows."""
    latencies = [r["latency_s"] for r in rows]
    tokens = sum(r["completion_tokens"] for r in rows)
    return {
        "latency_p50_ms": round(1000 * percentile(latencies, 50), 1) if latencies else None,
        "latency_p95_ms": round(1000 * percentile(latencies, 95), 1) if latencies else None,
        "output_tokens_per_s": round(tokens / sum(latencies), 2) if latencies and sum(latencies) else None,
        "mean_prompt_tokens": round(mean([r["prompt_tokens"] for r in rows]), 1) if rows else None,
        "mean_output_tokens": round(mean([r["completion_tokens"] for r in rows]), 1) if rows else None,
    }


def arm_costs(arm: str, state: dict[str, Any], job_key: str | None = None) -> dict[str, Any]:
    """What ``arm`` cost to build: the vector store (retrieval arms) and its adapter's training job
    (kept in the state under ``job_key``, by default the arm's name)."""
    store = state.get("store") or {}
    index = {
        "index_build_s": round(store.get("build_s", 0.0), 2),
        "upload_s": round(store.get("upload_s", 0.0), 2),
        "documents": store.get("documents"),
        "chunks": store.get("chunks"),
        "text_bytes": store.get("text_bytes"),
    }
    job = (state.get("jobs") or {}).get(job_key or arm) or {}
    training = {
        "job_id": job.get("job_id"),
        "model": job.get("model"),
        "train_examples": job.get("examples"),
        "train_wall_s": job.get("train_wall_s"),
        "queued_s": job.get("queued_s"),
        "train_cpu_s": job.get("train_cpu_s"),
        "trained_tokens": job.get("trained_tokens"),
        "final_train_loss": job.get("train_loss"),
        "data_build_s": round(job.get("data_build_s", 0.0), 2) if job else None,
    }
    return {
        "base": {},
        "rag": {"index": index},
        "ft": {"training": training},
        "rag+ft": {"index": index, "training": training},
    }[arm]


PAIRS = (("base", "rag"), ("base", "ft"), ("rag", "rag+ft"), ("ft", "rag+ft"), ("base", "rag+ft"), ("rag", "ft"))


def comparisons(
    results: dict[str, list[dict[str, Any]]], level: float, resamples: int, seed: int
) -> list[dict[str, Any]]:
    """Every pair of arms on the questions both answered: the F1 difference (candidate - baseline,
    in points) with its paired bootstrap interval, and the EM difference with McNemar's exact test;
    both raw and in short-answer form."""
    out = []
    for baseline, candidate in PAIRS:
        if baseline not in results or candidate not in results:
            continue
        a = {r["id"]: r for r in results[baseline] if r["split"] == "test"}
        b = {r["id"]: r for r in results[candidate] if r["split"] == "test"}
        ids = sorted(set(a) & set(b))
        if not ids:
            continue
        entry: dict[str, Any] = {"baseline": baseline, "candidate": candidate, "questions": len(ids)}
        for name, binary in (("f1", False), ("em", True), ("f1_short", False), ("em_short", True)):
            raw = name.removesuffix("_short")  # rows from before short answers were scored: the raw score
            found = compare_paired(
                name,
                baseline,
                [100 * a[i].get(name, a[i][raw]) for i in ids],
                candidate,
                [100 * b[i].get(name, b[i][raw]) for i in ids],
                binary=binary,
                level=level,
                resamples=resamples,
                seed=seed,
            )
            entry[name] = paired_entry(found)
        out.append(entry)
    return out


def paired_entry(found: PairedComparison) -> dict[str, Any]:
    """A paired comparison as the report keeps it (points, rounded)."""
    return {
        "difference": round(found.difference.value, 2),
        "low": round(found.difference.low, 2),
        "high": round(found.difference.high, 2),
        "level": found.difference.level,
        "test": "mcnemar-exact" if found.p_value is not None else "paired-bootstrap",
        "p_value": found.p_value,
        "discordant": list(found.discordant) if found.discordant else None,
        "significant": found.significant,
    }


def examples(results: dict[str, list[dict[str, Any]]], per_arm: int = 3) -> list[dict[str, Any]]:
    """A handful of questions where each arm won or lost most against the base model (by F1), with
    every arm's answer, its passages and the gold answers: the table of the HTML report."""
    base = {r["id"]: r for r in results.get("base", []) if r["split"] == "test"}
    chosen: dict[str, str] = {}
    for arm, rows in results.items():
        if arm == "base":
            continue
        scored = sorted(
            (r["f1"] - base[r["id"]]["f1"], r["id"]) for r in rows if r["split"] == "test" and r["id"] in base
        )
        for _, question in [*scored[-per_arm:], *scored[:per_arm]]:
            chosen.setdefault(question, arm)
    out: list[dict[str, Any]] = []
    for question, arm in chosen.items():
        answers: dict[str, dict[str, Any]] = {}
        for name, rows in results.items():
            row = next((r for r in rows if r["id"] == question and r["split"] == "test"), None)
            if row is not None:
                answers[name] = {"prediction": row["prediction"], "f1": row["f1"], "passages": row.get("passages")}
        item = base[question]
        out.append(
            {
                "id": question,
                "picked_for": arm,
                "question": item["question"],
                "gold": item["answers"],
                "answers": answers,
            }
        )
    return out


def build_report(
    config: dict[str, Any],
    state: dict[str, Any],
    results: dict[str, list[dict[str, Any]]],
    recipes: dict[str, str] | None = None,
    judged: dict[str, dict[str, Any]] | None = None,
) -> dict:
    level = float(config.get("promotion_level") or LEVEL)
    resamples = int(config.get("resamples") or RESAMPLES)
    seed = int(config.get("seed") or 0)
    arms = {
        arm: {**_arm_figures(rows, level, resamples, seed), "cost": arm_costs(arm, state)}
        for arm, rows in results.items()
    }
    for arm, recipe in (recipes or {}).items():
        if arm in arms:
            arms[arm]["recipe"] = recipe
    for arm, verdicts in (judged or {}).items():  # the optional LLM judge's shares (ragtune_eval.judge)
        if arm in arms:
            arms[arm]["judge"] = verdicts
    compared = comparisons(results, level, resamples, seed)
    built: dict[str, Any] = {
        "config": config,
        "base_model": state.get("base_model"),
        "vector_store_id": (state.get("store") or {}).get("id"),
        "arms": arms,
        "comparisons": compared,
        "examples": examples(results),
        "notes": [
            "EM and F1 are SQuAD v1.1 definitions (max over reference answers), in percent, on held-out questions,"
            " scored on the final answer (after '<ANSWER>:' for an adapter trained to reason first).",
            "Short-answer scores: the same answers, read by one gold-blind extraction for every arm (first"
            " sentence, no citation markers, no 'The answer is').",
            f"Intervals: {level:.0%} percentile bootstrap over the questions ({resamples} resamples, seed {seed});"
            " differences are paired (the same questions), with McNemar's exact test for EM.",
            "Groundedness (RAG arms): citation recall (a passage holding a gold answer was retrieved and cited),"
            " citation precision (cited passages that hold a gold answer), answer support (answer words found"
            " in the cited passages), abstention when no retrieved passage held the answer.",
            f"Latency is per request through the gateway at concurrency {config.get('concurrency')}.",
            "hit@k / recall@k: the question's own context among the passages the gateway cited (k = top_k).",
            "Training cost: wall-clock from the job leaving the queue to its end, the CPU seconds of its training"
            " process (user + system, all threads), and the tokens that carried loss.",
        ],
    }
    built["recommendation"] = recommend(arms, compared)
    return built


def _ci_text(found: dict[str, Any]) -> str:
    return f"{found['difference']:+.1f} F1 ({found['level']:.0%} CI [{found['low']:+.1f}, {found['high']:+.1f}])"


def recommend(arms: dict[str, dict[str, Any]], compared: list[dict[str, Any]] | None = None) -> list[str]:
    """Sentences derived from the figures. A difference is spoken of only when its paired interval
    excludes zero; otherwise "no detectable difference". The arm to choose: the cheapest whose F1 is
    not significantly below the best arm's."""
    f1 = {arm: fig["f1"] for arm, fig in arms.items() if fig.get("f1") is not None}
    if not f1:
        return ["No answers were scored."]
    pairs = {(c["baseline"], c["candidate"]): c["f1"] for c in compared or []}
    lines: list[str] = []

    def said(baseline: str, candidate: str, what: str, good: str, flat: str) -> None:
        found = pairs.get((baseline, candidate))
        if found is None:
            return
        if found["significant"]:
            direction = good if found["difference"] > 0 else f"makes answers worse ({what})"
            lines.append(f"{what[0].upper() + what[1:]}: {_ci_text(found)}: {direction}.")
        else:
            lines.append(f"{what[0].upper() + what[1:]}: no detectable difference, {_ci_text(found)}: {flat}.")

    hit = (arms.get("rag", {}).get("retrieval") or {}).get("hit_at_k")
    hit_text = f" (the right passage retrieved for {100 * hit:.0f}% of questions)" if hit is not None else ""
    said(
        "base",
        "rag",
        f"retrieval over the base model{hit_text}",
        "the answers are knowledge held in your documents, and retrieval brings it in",
        "check the retrieval figures first",
    )
    said(
        "base",
        "ft",
        "closed-book fine-tuning over the base model",
        "it teaches format and behaviour (short, exact answers)",
        "it does not teach the facts of unseen questions",
    )
    said(
        "rag",
        "rag+ft",
        "a RAFT adapter on top of retrieval",
        "it pays for its training",
        "it does not pay for its training here",
    )
    lines += overfitting_lines(arms, "train_minus_test_f1", "F1", "questions")
    choice, top = choose_arm(f1, pairs)
    why = "the best F1" if choice == top else f"no detectable difference from {top} ({f1[top]:.1f}), and cheaper"
    questions = min(fig.get("questions") or 0 for fig in arms.values())
    if questions < SMALL_SAMPLE:
        lines.append(f"Only {questions} held-out questions: the intervals are wide; more questions narrow them.")
    lines.append(f"Recommended: {choice} (F1 {f1[choice]:.1f}, {why}).")
    return lines


def overfitting_lines(arms: dict[str, dict[str, Any]], gap_key: str, metric: str, items: str) -> list[str]:
    """Each adapter's train / held-out gap (``arms[arm][gap_key]``, points of ``metric``) against the
    same gap of its arm without the adapter: what remains is what training memorised."""
    lines = []
    for arm, counterpart in (("ft", "base"), ("rag+ft", "rag")):
        gap = arms.get(arm, {}).get(gap_key)
        if gap is None:
            continue
        reference = arms.get(counterpart, {}).get(gap_key) or 0.0
        excess = gap - reference
        verdict = "overfitting: it memorised training answers" if excess > OVERFIT_GAP else "no sign of overfitting"
        lines.append(
            f"{arm}: train {metric} exceeds held-out {metric} by {gap:.1f} points "
            f"({excess:+.1f} beyond {counterpart}'s {reference:.1f} on the same {items}): {verdict}."
        )
    return lines


CHEAPEST_FIRST = ("base", "rag", "ft", "rag+ft")  # by what each costs to build and to serve


def choose_arm(scores: dict[str, float], pairs: dict[tuple[str, str], dict[str, Any]]) -> tuple[str, str]:
    """(the arm to choose, the best-scoring arm): the cheapest arm whose score is not significantly
    below the best one's (``pairs``: the paired comparison of two arms, either way round)."""
    top = max(scores, key=lambda a: scores[a])

    def not_worse(arm: str) -> bool:
        if arm == top:
            return True
        found = pairs.get((arm, top)) or pairs.get((top, arm))
        return found is not None and not found["significant"]

    return next(arm for arm in CHEAPEST_FIRST if arm in scores and not_worse(arm)), top


def chart_points(built: dict[str, Any], metric: str = "f1") -> list[ChartPoint]:
    """The arms with a score and a latency, in the report's order: ``metric`` (a task report's
    ``score``) with its interval (``<metric>_ci``)."""
    return [
        ChartPoint(
            arm,
            fig[metric],
            fig["latency_p50_ms"],
            fig["latency_p95_ms"],
            (fig.get(f"{metric}_ci") or {}).get("low"),
            (fig.get(f"{metric}_ci") or {}).get("high"),
        )
        for arm, fig in built["arms"].items()
        if fig.get(metric) is not None and fig.get("latency_p50_ms") is not None
    ]


def write_all(built: dict[str, Any], folder: Path) -> dict[str, str]:
    files = {
        "json": folder / "report.json",
        "markdown": folder / "report.md",
        "chart": folder / CHART_NAME,
        "html": folder / HTML_NAME,
    }
    files["chart"].write_text(quality_latency_svg(chart_points(built)), encoding="utf-8")
    built["files"] = {kind: str(path) for kind, path in files.items()}
    files["json"].write_text(json.dumps(built, indent=2) + "\n", encoding="utf-8")
    files["markdown"].write_text(to_markdown(built), encoding="utf-8")
    files["html"].write_text(to_html(built, chart_points(built)), encoding="utf-8")
    return built["files"]
