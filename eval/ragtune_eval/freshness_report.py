"""The freshness report: per arm, how many answers give the new fact (and still the old one) before
and after its refresh, with bootstrap intervals and the paired difference on the same questions,
the time from the edit to fresh answers, and a verdict in plain words; as JSON and Markdown.

An answer *gives* a fact when the fact's value stands in it as a whole phrase after SQuAD
normalisation (:func:`ragtune_eval.freshness_edit.mentions`): the small model answers in sentences,
so exact match would miss most right answers. Exact match and token F1 of the short-answer reading
are reported beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragtune_eval.arms import short_answer
from ragtune_eval.freshness_edit import FactEdit, mentions
from ragtune_eval.report import interval, paired_entry, percent
from ragtune_eval.scoring import best_over_answers
from ragtune_eval.significance import compare_paired

JSON_NAME = "freshness.json"
MARKDOWN_NAME = "freshness.md"

# (arm, results before the edit, results after its refresh, the refresh, its timing record)
ARMS = (
    ("rag", "rag before", "rag", "re-ingest the edited documents", "rag"),
    ("ft", "ft before", "ft", "retrain the adapter on the edited facts", "ft"),
    ("rag+ft (old adapter)", "rag+ft before", "rag+ft old adapter", "re-ingest only, adapter kept", "rag"),
    ("rag+ft (retrained)", "rag+ft before", "rag+ft retrained", "re-ingest and retrain", None),
)


def result_names(attempt: int, rag_ft: bool) -> dict[str, str]:
    """Which stored results hold each set of answers; those after the edit carry the attempt."""
    names = {"rag before": "rag-before", "ft before": "ft-before", "rag": f"rag-after-{attempt}"}
    names["ft"] = f"ft-after-{attempt}"
    if rag_ft:
        names.update(
            {
                "rag+ft before": "rag+ft-before",
                "rag+ft old adapter": f"rag+ft-old-after-{attempt}",
                "rag+ft retrained": f"rag+ft-after-{attempt}",
            }
        )
    return names


def score(row: dict[str, Any], edit: FactEdit) -> dict[str, float]:
    """An answer against the new gold and the old one: does it give the fact, and the short
    answer's EM and F1."""
    short = short_answer(row["prediction"])
    em_new, f1_new = best_over_answers(short, [edit.new_answer])
    em_old, f1_old = best_over_answers(short, edit.old_answers)
    scores = {
        "new": mentions(row["prediction"], edit.new_answer),
        "old": max(mentions(row["prediction"], answer) for answer in edit.old_answers),
        "em_new": em_new,
        "f1_new": f1_new,
        "em_old": em_old,
        "f1_old": f1_old,
    }
    if "passages" in row:  # what the model was shown: is the store fresh, whatever the model makes of it
        text = " ".join(row["passages"])
        scores["passages_new"] = mentions(text, edit.new_answer)
        scores["passages_old"] = max(mentions(text, answer) for answer in edit.old_answers)
    return scores


def _figures(scores: list[dict[str, float]], level: float, resamples: int, seed: int) -> dict[str, Any]:
    def metric(key: str) -> dict[str, Any]:
        values = [s[key] for s in scores]
        return {"value": percent(values), "ci": interval(values, level, resamples, seed)}

    keys = ["new", "old", "em_new", "f1_new"]
    if scores and "passages_new" in scores[0]:
        keys += ["passages_new", "passages_old"]
    return {"answers": len(scores), **{key: metric(key) for key in keys}}


def build_report(
    config: dict[str, Any],
    state: dict[str, Any],
    edits: list[FactEdit],
    results: dict[str, list[dict[str, Any]]],
    names: dict[str, str],
) -> dict[str, Any]:
    level, resamples, seed = float(config["level"]), int(config["resamples"]), int(config["seed"])
    by_id = {e.id: e for e in edits}
    attempt = str((state.get("after") or {}).get("attempt", 0))
    refresh = (state.get("refreshes") or {}).get(attempt, {})
    arms: dict[str, Any] = {}
    for arm, before_key, after_key, how, timing in ARMS:
        if before_key not in names or after_key not in names:
            continue
        before = {r["id"]: score(r, by_id[r["id"]]) for r in results.get(names[before_key], [])}
        after = {r["id"]: score(r, by_id[r["id"]]) for r in results.get(names[after_key], [])}
        ids = sorted(set(before) & set(after))
        if not ids:
            continue
        paired = compare_paired(
            "new",
            "before",
            [100 * before[i]["new"] for i in ids],  # points, as every interval of the reports
            "after",
            [100 * after[i]["new"] for i in ids],
            binary=True,
            level=level,
            resamples=resamples,
            seed=seed,
        )
        arms[arm] = {
            "refresh": how,
            "before": _figures([before[i] for i in ids], level, resamples, seed),
            "after": _figures([after[i] for i in ids], level, resamples, seed),
            "after_minus_before_new": paired_entry(paired),
            "time": _times(arm, refresh, timing, state),
        }
    for arm, figures in arms.items():
        figures["verdict"] = verdict(arm, figures)
    rag_s = (arms.get("rag") or {}).get("time", {}).get("time_to_fresh_s")
    ft_s = (arms.get("ft") or {}).get("time", {}).get("time_to_fresh_s")
    return {
        "config": config,
        "base_model": state.get("base_model"),
        "vector_store_id": (state.get("store") or {}).get("id"),
        "attempt": int(attempt),
        "facts": len(edits),
        "shapes": _count(e.shape for e in edits),
        "arms": arms,
        "time_to_fresh": {
            "rag_s": rag_s,
            "ft_s": ft_s,
            "ft_over_rag": round(ft_s / rag_s, 2) if rag_s and ft_s else None,
        },
        "examples": [_example(e, results, names) for e in edits[:5]],
        "summary": summary(arms),
        "notes": [
            "An answer gives a fact when the fact's value stands in it as a whole phrase (SQuAD normalisation);"
            " the old gold counts every SQuAD reference answer, the new gold the one counterfactual value.",
            "Before: asked before the edit; the system serves the same until a refresh, so these are also its"
            " stale answers, scored on the new gold. After: asked once the refresh is served.",
            f"Intervals: {level:.0%} percentile bootstrap over the facts ({resamples} resamples, seed {seed});"
            " after - before is paired on the same facts, with McNemar's exact test.",
            "Time to fresh: from the moment the refresh is handed the edited documents to the first answer that"
            " gives a new fact. The two refreshes run one after the other, never at once.",
        ],
    }


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _times(arm: str, refresh: dict[str, Any], timing: str | None, state: dict[str, Any]) -> dict[str, Any]:
    if timing is None or arm.startswith("rag+ft"):
        return {"time_to_fresh_s": None, "same_as": "rag" if timing else "rag and ft"}
    record = refresh.get(timing) or {}
    times = {k: record.get(k) for k in ("edited_at", "ready_s", "first_answer_s", "first_correct_s", "all_answered_s")}
    times["time_to_fresh_s"] = record.get("first_correct_s")
    if timing == "ft":
        job = (state.get("jobs") or {}).get(record.get("job", ""), {})
        times.update({k: job.get(k) for k in ("queued_s", "train_wall_s", "train_cpu_s", "trained_tokens", "examples")})
    else:
        times["upload_s"] = record.get("upload_s")
    return times


def _example(edit: FactEdit, results: dict[str, list[dict[str, Any]]], names: dict[str, str]) -> dict[str, Any]:
    answers = {}
    for label, name in names.items():
        row = next((r for r in results.get(name, []) if r["id"] == edit.id), None)
        if row is not None:
            answers[label] = row["prediction"]
    return {"question": edit.question, "old": list(edit.old_answers), "new": edit.new_answer, "answers": answers}


def _pct(figures: dict[str, Any], key: str) -> str:
    value = figures[key]["value"]
    return "-" if value is None else f"{value:.0f}%"


def verdict(arm: str, figures: dict[str, Any]) -> str:
    """One line a product owner reads: how fresh the arm is and what the refresh takes."""
    before, after, time = figures["before"], figures["after"], figures["time"]
    gain = figures["after_minus_before_new"]
    change = "a clear change" if gain["significant"] else "no detectable change"
    stale = f"{_pct(after, 'old')} still give the old one"
    if arm == "rag":
        ready = time.get("ready_s")
        shown = ""
        if "passages_new" in after:
            shown = (
                f"; the passages it is shown hold the new fact for {_pct(after, 'passages_new')} of questions"
                f" and the old one for {_pct(after, 'passages_old')}"
            )
        return (
            f"Re-ingesting the changed documents ({ready:.1f} s) is all it takes to make them fresh{shown}:"
            f" {_pct(after, 'new')} of answers then give the new fact (before: {_pct(before, 'new')}; {change}),"
            f" {stale}."
        )
    if arm == "ft":
        ready, cpu = time.get("ready_s"), time.get("train_cpu_s")
        cost = f"{ready / 60:.1f} min" + (f", {cpu:.0f} CPU-seconds" if cpu else "") if ready else "retraining"
        return (
            f"The adapter answers what it was trained on until it is retrained: right after the edit"
            f" {_pct(before, 'old')} of its answers give the old fact and {_pct(before, 'new')} the new one;"
            f" retraining ({cost}) brings {_pct(after, 'new')} ({change}), {stale}."
        )
    if arm == "rag+ft (old adapter)":
        return (
            f"Re-ingesting alone, the old adapter over the new passages: {_pct(after, 'new')} of answers give the"
            f" new fact ({change}) and {stale}: what the adapter memorised competes with the documents."
        )
    return f"Re-ingesting and retraining: {_pct(after, 'new')} give the new fact ({change}), {stale}."


def summary(arms: dict[str, Any]) -> str:
    rag, ft = arms.get("rag"), arms.get("ft")
    if not rag or not ft:
        return "Not every arm has answers yet."
    rag_s, ft_s = rag["time"].get("time_to_fresh_s"), ft["time"].get("time_to_fresh_s")
    if rag_s is None or ft_s is None:
        missing = "retrieval" if rag_s is None else "the retrained adapter"
        return f"No answer of {missing} gave a new fact after its refresh: its time to fresh is not defined."
    faster = "retrieval" if rag_s < ft_s else "fine-tuning"
    ratio = max(rag_s, ft_s) / min(rag_s, ft_s)
    return (
        f"For facts that change, {faster} is fresh first: a first answer with the new fact {rag_s:.0f} s after the"
        f" edit with re-ingestion against {ft_s:.0f} s with retraining ({ratio:.1f}x)."
    )


def _ci(figures: dict[str, Any], key: str) -> str:
    value, found = figures[key]["value"], figures[key]["ci"]
    if value is None or found is None:
        return "-"
    return f"{value:.1f} [{found['low']:.1f}, {found['high']:.1f}]"


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def to_markdown(built: dict[str, Any]) -> str:
    lines = [
        f"## Freshness: {built['facts']} edited facts ({built['config']['dataset']}, seed {built['config']['seed']})",
        "",
        "| arm | refresh | new fact before | new fact after [95% CI] | old fact after | after - before |"
        " time to fresh | store / adapter ready |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, fig in built["arms"].items():
        gain, time = fig["after_minus_before_new"], fig["time"]
        lines.append(
            f"| {arm} | {fig['refresh']} | {_ci(fig['before'], 'new')} | {_ci(fig['after'], 'new')} |"
            f" {_ci(fig['after'], 'old')} | {gain['difference']:+.1f} [{gain['low']:+.1f}, {gain['high']:+.1f}],"
            f" p {gain['p_value']:.4f} | {_seconds(time.get('time_to_fresh_s'))} s |"
            f" {_seconds(time.get('ready_s'))} s |"
        )
    ft = built["arms"].get("ft", {}).get("time", {})
    if ft.get("train_wall_s") is not None:
        lines += [
            "",
            f"Retraining: {ft.get('examples')} examples, {ft.get('queued_s')} s queued, {ft.get('train_wall_s')} s"
            f" training wall-clock, {_seconds(ft.get('train_cpu_s'))} CPU-seconds, {ft.get('trained_tokens')} tokens.",
        ]
    shown = [
        f"| {arm} | {_ci(fig['before'], 'passages_new')} | {_ci(fig['after'], 'passages_new')} |"
        f" {_ci(fig['after'], 'passages_old')} |"
        for arm, fig in built["arms"].items()
        if "passages_new" in fig["after"]
    ]
    if shown:
        lines += [
            "",
            "| arm | passages shown hold the new fact, before | after | passages hold the old fact, after |",
            "|---|---|---|---|",
            *shown,
        ]
    lines += ["", *[f"- **{arm}**: {fig['verdict']}" for arm, fig in built["arms"].items()], "", built["summary"]]
    return "\n".join(lines) + "\n"


def write_all(built: dict[str, Any], folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JSON_NAME).write_text(json.dumps(built, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / MARKDOWN_NAME).write_text(to_markdown(built), encoding="utf-8")
    return {"json": str(folder / JSON_NAME), "markdown": str(folder / MARKDOWN_NAME)}
