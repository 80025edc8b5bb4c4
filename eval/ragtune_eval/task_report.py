"""The report of a task evaluation: per arm the task's metrics (``ragtune_eval.task_metrics``) with
bootstrap intervals, latency, prompt tokens, costs and the train vs held-out gap; the paired
differences between arms on the same items; the learning curve; and a recommendation in plain words
that speaks only of differences whose interval excludes zero. Written as ``report.json``,
``report.md`` (``ragtune_eval.task_markdown``) and ``report.html`` (``ragtune_eval.task_html``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragtune_eval.report import (
    PAIRS,
    SMALL_SAMPLE,
    arm_costs,
    choose_arm,
    interval,
    overfitting_lines,
    paired_entry,
    percent,
    rounded,
    serving_figures,
)
from ragtune_eval.significance import (
    LEVEL,
    RESAMPLES,
    bootstrap_statistic,
    compare_paired,
    compare_paired_statistic,
)
from ragtune_eval.task_html import to_task_html
from ragtune_eval.task_markdown import to_task_markdown
from ragtune_eval.task_metrics import BINARY, HEADLINE, macro_f1, summary


def _split(rows: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["split"] == split]


def _macro_f1_of(rows: list[dict[str, Any]]) -> Callable[[Sequence[int]], float]:
    """Macro-F1 of the rows at some indices (a bootstrap resample), 0 when it has no label."""
    return lambda indices: macro_f1([(rows[i]["gold"], rows[i]["predicted"]) for i in indices]) or 0.0


def arm_figures(kind: str, rows: list[dict[str, Any]], level: float, resamples: int, seed: int) -> dict[str, Any]:
    test, train = _split(rows, "test"), _split(rows, "train")
    scores = [r["score"] for r in test]
    figures: dict[str, Any] = {
        "items": len(test),
        "score": percent(scores),
        "score_ci": interval(scores, level, resamples, seed),
        "metrics": summary(kind, test),
        **serving_figures(test),
        "train_sample": {"items": len(train), "score": percent([r["score"] for r in train])},
    }
    if kind == "extraction":
        figures["exact_ci"] = interval([r["exact"] for r in test], level, resamples, seed)
    if kind == "classification" and test:
        found = bootstrap_statistic(len(test), _macro_f1_of(test), level=level, resamples=resamples, seed=seed)
        figures["macro_f1_ci"] = rounded(found)
    train_score = figures["train_sample"]["score"]
    figures["train_minus_test"] = (
        round(train_score - figures["score"], 2) if train_score is not None and figures["score"] is not None else None
    )
    return figures


def retrieved_labels(rows: list[dict[str, Any]], targets: dict[str, str]) -> dict[str, Any] | None:
    """Classification with retrieved examples: what the search alone would have answered, to read the
    arm's accuracy against. In percent of held-out items: the gold label is among the examples shown;
    the most similar example's label is the gold one (a 1-nearest-neighbour classifier on the same
    search); the labels' majority (ties to the most similar) is; and the answer is one of the labels
    shown (the model copied rather than chose another)."""
    shown = [(r, [targets[d] for d in r.get("demonstrations") or [] if d in targets]) for r in _split(rows, "test")]
    shown = [(r, labels) for r, labels in shown if labels]
    if not shown:
        return None

    def vote(labels: list[str]) -> str:  # most similar last
        counts = Counter(labels)
        top = max(counts.values())
        return next(label for label in reversed(labels) if counts[label] == top)

    return {
        "items": len(shown),
        "gold_shown": percent([float(r["gold"] in labels) for r, labels in shown]),
        "nearest_is_gold": percent([float(labels[-1] == r["gold"]) for r, labels in shown]),
        "vote_is_gold": percent([float(vote(labels) == r["gold"]) for r, labels in shown]),
        "answer_shown": percent([float(r.get("predicted") in labels) for r, labels in shown]),
    }


def compare(
    kind: str, baseline: list[dict[str, Any]], candidate: list[dict[str, Any]], level: float, resamples: int, seed: int
) -> dict[str, Any] | None:
    """``candidate - baseline`` on the held-out items both answered: the headline score (points)
    with its paired bootstrap interval (and McNemar's exact test for a 0/1 score); for extraction
    also exact-object match; for classification also macro-F1 (both arms' macro-F1 recomputed on
    the same resampled items)."""
    a = {r["id"]: r for r in _split(baseline, "test")}
    b = {r["id"]: r for r in _split(candidate, "test")}
    ids = sorted(set(a) & set(b))
    if not ids:
        return None
    entry: dict[str, Any] = {"items": len(ids)}
    metrics = [("score", BINARY[kind])] + ([("exact", True)] if kind == "extraction" else [])
    for metric, binary in metrics:
        found = compare_paired(
            metric,
            "baseline",
            [100 * a[i][metric] for i in ids],
            "candidate",
            [100 * b[i][metric] for i in ids],
            binary=binary,
            level=level,
            resamples=resamples,
            seed=seed,
        )
        entry[metric] = paired_entry(found)
    if kind == "classification":
        base_rows, cand_rows = [a[i] for i in ids], [b[i] for i in ids]
        found = compare_paired_statistic(
            "macro_f1",
            "baseline",
            _macro_f1_of(base_rows),
            "candidate",
            _macro_f1_of(cand_rows),
            len(ids),
            level=level,
            resamples=resamples,
            seed=seed,
        )
        entry["macro_f1"] = paired_entry(found)
    return entry


def learning_curve(
    kind: str,
    curve: dict[int, dict[str, list[dict[str, Any]]]],
    full: tuple[int, dict[str, list[dict[str, Any]]]],
    level: float,
    resamples: int,
    seed: int,
) -> list[dict[str, Any]]:
    """One row per training-set size: each curve arm's held-out score with its interval; the full
    size is the main arms' own run."""
    points = [*sorted(curve.items()), full]
    out = []
    for size, arms in points:
        row: dict[str, Any] = {"size": size}
        for arm, rows in arms.items():
            scores = [r["score"] for r in _split(rows, "test")]
            if scores:
                row[arm] = {"score": percent(scores), "ci": interval(scores, level, resamples, seed)}
        out.append(row)
    return out


def build_task_report(
    config: dict[str, Any],
    state: dict[str, Any],
    results: dict[str, list[dict[str, Any]]],
    curve: dict[int, dict[str, list[dict[str, Any]]]],
    described: dict[str, Any],
) -> dict[str, Any]:
    kind = config["kind"]
    level = float(config.get("promotion_level") or LEVEL)
    resamples = int(config.get("resamples") or RESAMPLES)
    seed = int(config.get("seed") or 0)
    arms = {}
    for arm, rows in results.items():
        arms[arm] = {
            **arm_figures(kind, rows, level, resamples, seed),
            "cost": arm_costs(arm, state),
            "prompt": described["prompts"].get(arm),
            "recipe": described["recipes"].get(arm),
        }
        targets = described.get("train_targets") if kind == "classification" else None
        if targets and (found := retrieved_labels(rows, targets)):
            arms[arm]["retrieved_labels"] = found
    compared = []
    for baseline, candidate in PAIRS:
        if baseline in results and candidate in results:
            found = compare(kind, results[baseline], results[candidate], level, resamples, seed)
            if found is not None:
                compared.append({"baseline": baseline, "candidate": candidate, **found})
    built: dict[str, Any] = {
        "config": config,
        "kind": kind,
        "headline": HEADLINE[kind],
        "base_model": state.get("base_model"),
        "vector_store_id": (state.get("store") or {}).get("id"),
        "task": {k: described[k] for k in ("instructions", "labels", "schema", "train_items", "test_items")},
        "arms": arms,
        "comparisons": compared,
        "notes": notes(kind, config, level, resamples, seed, _through_eval_runs(results)),
    }
    if curve:
        full: tuple[int, dict[str, list[dict[str, Any]]]] = (
            int(config["train"]),
            {arm: results[arm] for arm in ("rag", "ft") if arm in results},
        )
        built["learning_curve"] = learning_curve(kind, curve, full, level, resamples, seed)
    built["recommendation"] = recommend(kind, arms, compared)
    return built


def _through_eval_runs(results: dict[str, list[dict[str, Any]]]) -> bool:
    """Whether the held-out answers came from eval runs (answers stored before they did not)."""
    return any("eval_run_id" in r for rows in results.values() for r in _split(rows, "test"))


def notes(
    kind: str, config: dict[str, Any], level: float, resamples: int, seed: int, eval_runs: bool = True
) -> list[str]:
    metric = {
        "classification": "Accuracy: the answer's first line, normalised (case, '_'/'-' as spaces, outer"
        " punctuation), equals the gold label. Macro-F1 averages the F1 of every label that is gold or"
        " predicted; 'is a label': the share of answers that are one label of the set; 'names one label': the"
        " accuracy of a lenient reading, the one label the answer names anywhere (none or several: wrong).",
        "extraction": "Item F1: the answer parsed as one JSON object (a fenced block tolerated) and the gold"
        " object as sets of (field, normalised value) pairs, F1 per item (1 when both are empty and the"
        " answer is an object; an answer that is no object scores 0), averaged;"
        " micro P/R/F1 sum the pairs of all items; exact: the two sets are equal; parses / validates: the"
        " share of answers that are a JSON object / that hold only the schema's fields with values of its kind.",
        "answer": f"Accuracy: the text after the last '{config.get('answer_mark')}' equals the gold final"
        " answer (numbers normalised: 1,000 = 1000.0); format: the share of answers with the mark; lenient:"
        " the last number of the answer is the gold one.",
    }[kind]
    return [
        metric,
        f"Intervals: {level:.0%} percentile bootstrap over the held-out items ({resamples} resamples, seed {seed});"
        " differences are paired (the same items), with McNemar's exact test for 0/1 scores.",
        (
            "Latency is per held-out item: the answer as the gateway's eval-run worker timed it (4 items at a time),"
            " plus, for the retrieval arms, the search for demonstrations (the harness's, at concurrency"
            f" {config.get('concurrency')})."
            if eval_runs
            else f"Latency is per request through the gateway at concurrency {config.get('concurrency')}; for the"
            " retrieval arms it includes the search for demonstrations."
        ),
        "Training cost: wall-clock from the job leaving the queue to its end and the CPU seconds of its"
        " training process; index build: uploading and indexing the training examples as documents.",
    ]


def _points(found: dict[str, Any]) -> str:
    return f"{found['difference']:+.1f} points ({found['level']:.0%} CI [{found['low']:+.1f}, {found['high']:+.1f}])"


CHOICE = {
    "base": "Use the base model with the instructions alone: nothing else made a detectable difference here.",
    "rag": "Use retrieval of labelled examples into the prompt: no adapter to train, and a new or corrected"
    " example counts as soon as it is in the store.",
    "ft": "Use the fine-tuned adapter: it learned the task from the training examples; retrain it when the"
    " examples change.",
    "rag+ft": "Use the fine-tuned adapter together with retrieved examples.",
}


def recommend(kind: str, arms: dict[str, dict[str, Any]], compared: list[dict[str, Any]]) -> list[str]:
    scores = {arm: fig["score"] for arm, fig in arms.items() if fig.get("score") is not None}
    if not scores:
        return ["No answers were scored."]
    headline = HEADLINE[kind]
    pairs = {(c["baseline"], c["candidate"]): c["score"] for c in compared}
    lines = []
    for baseline, candidate, what in (
        ("base", "rag", "retrieved examples as demonstrations over zero-shot"),
        ("base", "ft", "fine-tuning over zero-shot"),
        ("rag", "rag+ft", "fine-tuning on top of retrieved examples"),
        ("ft", "rag+ft", "retrieved examples on top of fine-tuning"),
    ):
        found = pairs.get((baseline, candidate))
        if found is None:
            continue
        if found["significant"]:
            better = "better" if found["difference"] > 0 else "worse"
            lines.append(f"{what[0].upper()}{what[1:]}: {headline} {_points(found)}: {better}.")
        else:
            lines.append(f"{what[0].upper()}{what[1:]}: no detectable difference, {headline} {_points(found)}.")
    lines += overfitting_lines(arms, "train_minus_test", headline, "items")
    choice, top = choose_arm(scores, pairs)
    why = f"the best {headline}" if choice == top else f"no detectable difference from {top} ({scores[top]:.1f}%)"
    items = min(fig.get("items") or 0 for fig in arms.values())
    if items < SMALL_SAMPLE:
        lines.append(f"Only {items} held-out items: the intervals are wide; more items narrow them.")
    lines.append(f"Recommended: {choice} ({headline} {scores[choice]:.1f}%, {why}). {CHOICE[choice]}")
    return lines


def write_task_report(built: dict[str, Any], folder: Path) -> dict[str, str]:
    files = {"json": folder / "report.json", "markdown": folder / "report.md", "html": folder / "report.html"}
    built["files"] = {kind: str(path) for kind, path in files.items()}
    files["json"].write_text(json.dumps(built, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    files["markdown"].write_text(to_task_markdown(built), encoding="utf-8")
    files["html"].write_text(to_task_html(built), encoding="utf-8")
    return built["files"]
