"""The report of a QA evaluation: per-arm figures computed from the stored answers, the costs, a
Markdown table, an SVG chart of quality against latency, and a recommendation read off the numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ragtune_eval.chart import ChartPoint, quality_latency_svg
from ragtune_eval.scoring import mean, percentile

CHART_NAME = "chart.svg"

MEANINGFUL_F1 = 2.0  # points of F1 below which two arms count as level
OVERFIT_GAP = 10.0  # F1 points by which a fine-tuned arm's train/held-out gap may exceed its counterpart's
SMALL_SAMPLE = 100  # held-out questions below which the report warns about noise


def percent(values: list[float]) -> float | None:
    return round(100 * mean(values), 2) if values else None


def _arm_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    test = [r for r in rows if r["split"] == "test"]
    train = [r for r in rows if r["split"] == "train"]
    latencies = [r["latency_s"] for r in test]
    tokens = sum(r["completion_tokens"] for r in test)
    with_retrieval = [r for r in test if "hit_at_k" in r]
    figures: dict[str, Any] = {
        "questions": len(test),
        "em": percent([r["em"] for r in test]),
        "f1": percent([r["f1"] for r in test]),
        "latency_p50_ms": round(1000 * percentile(latencies, 50), 1) if latencies else None,
        "latency_p95_ms": round(1000 * percentile(latencies, 95), 1) if latencies else None,
        "output_tokens_per_s": round(tokens / sum(latencies), 2) if latencies and sum(latencies) else None,
        "mean_prompt_tokens": round(mean([r["prompt_tokens"] for r in test]), 1) if test else None,
        "mean_output_tokens": round(mean([r["completion_tokens"] for r in test]), 1) if test else None,
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
    train_f1, test_f1 = figures["train_sample"]["f1"], figures["f1"]
    figures["train_minus_test_f1"] = (
        round(train_f1 - test_f1, 2) if train_f1 is not None and test_f1 is not None else None
    )
    return figures


def _costs(arm: str, state: dict[str, Any]) -> dict[str, Any]:
    store = state.get("store") or {}
    index = {
        "index_build_s": round(store.get("build_s", 0.0), 2),
        "upload_s": round(store.get("upload_s", 0.0), 2),
        "documents": store.get("documents"),
        "chunks": store.get("chunks"),
        "text_bytes": store.get("text_bytes"),
    }
    job = (state.get("jobs") or {}).get(arm) or {}
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


def build_report(config: dict[str, Any], state: dict[str, Any], results: dict[str, list[dict[str, Any]]]) -> dict:
    arms = {arm: {**_arm_figures(rows), "cost": _costs(arm, state)} for arm, rows in results.items()}
    built = {
        "config": config,
        "base_model": state.get("base_model"),
        "vector_store_id": (state.get("store") or {}).get("id"),
        "arms": arms,
        "notes": [
            "EM and F1 are SQuAD v1.1 definitions (max over reference answers), in percent, on held-out questions.",
            f"Latency is per request through the gateway at concurrency {config.get('concurrency')}.",
            "hit@k / recall@k: the question's own context among the passages the gateway cited (k = top_k).",
            "Training cost: wall-clock from the job leaving the queue to its end, the CPU seconds of its training"
            " process (user + system, all threads), and the tokens that carried loss.",
        ],
    }
    built["recommendation"] = recommend(arms)
    return built


def recommend(arms: dict[str, dict[str, Any]]) -> list[str]:
    """Sentences derived from the figures: what retrieval and fine-tuning each bought, whether the
    fine-tuned arms overfit (train/held-out gap beyond the base model's), and the arm to choose."""
    f1 = {arm: fig["f1"] for arm, fig in arms.items() if fig.get("f1") is not None}
    lines: list[str] = []
    if not f1:
        return ["No answers were scored."]

    def delta(a: str, b: str) -> float | None:
        return f1[a] - f1[b] if a in f1 and b in f1 else None

    if (d := delta("rag", "base")) is not None:
        hit = (arms["rag"].get("retrieval") or {}).get("hit_at_k")
        hit_text = f", the right passage retrieved for {100 * hit:.0f}% of questions" if hit is not None else ""
        if d > MEANINGFUL_F1:
            lines.append(
                f"Retrieval adds {d:+.1f} F1 over the base model{hit_text}: the answers are knowledge held in "
                "your documents, and retrieval is what brings it in (and stays fresh when documents change)."
            )
        else:
            lines.append(f"Retrieval changes F1 by {d:+.1f} only{hit_text}: check the retrieval figures first.")
    if (d := delta("ft", "base")) is not None:
        kind = "format and behaviour (short, exact answers)" if d > MEANINGFUL_F1 else "little"
        lines.append(
            f"Closed-book fine-tuning changes F1 by {d:+.1f}: it teaches {kind}, not the facts of unseen questions."
        )
    if (d := delta("rag+ft", "rag")) is not None:
        verdict = "pays for its training" if d > MEANINGFUL_F1 else "does not pay for its training here"
        lines.append(f"A RAFT adapter on top of retrieval changes F1 by {d:+.1f} over plain retrieval: it {verdict}.")
    for arm, counterpart in (("ft", "base"), ("rag+ft", "rag")):
        gap = arms.get(arm, {}).get("train_minus_test_f1")
        if gap is None:
            continue
        # the same questions asked without the adapter: what remains is what training memorised
        reference = arms.get(counterpart, {}).get("train_minus_test_f1") or 0.0
        excess = gap - reference
        verdict = "overfitting: it memorised training answers" if excess > OVERFIT_GAP else "no sign of overfitting"
        lines.append(
            f"{arm}: train F1 exceeds held-out F1 by {gap:.1f} points "
            f"({excess:+.1f} beyond {counterpart}'s {reference:.1f} on the same questions): {verdict}."
        )
    cheapest = ["base", "rag", "ft", "rag+ft"]  # by what each costs to build and to serve
    best = max(f1.values())
    choice = next(arm for arm in cheapest if arm in f1 and f1[arm] >= best - MEANINGFUL_F1)
    top = max(f1, key=lambda a: f1[a])
    why = "the best F1" if choice == top else f"within {MEANINGFUL_F1:.0f} F1 of {top} ({f1[top]:.1f}) and cheaper"
    questions = min(fig.get("questions") or 0 for fig in arms.values())
    if questions < SMALL_SAMPLE:
        lines.append(f"Only {questions} held-out questions: differences of a few F1 points are within noise.")
    lines.append(f"Recommended: {choice} (F1 {f1[choice]:.1f}, {why}).")
    return lines


def _cell(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def to_markdown(built: dict[str, Any]) -> str:
    k = built["config"].get("top_k")
    head = f"| arm | EM | F1 | train F1 (gap) | hit@{k} | recall@{k} | p50 ms | p95 ms | out tok/s | cost |"
    lines = [
        f"# ragtune eval: {built['config'].get('dataset')}",
        "",
        f"{built['config'].get('train')} train / {built['config'].get('test')} held-out questions, "
        f"seed {built['config'].get('seed')}, base model {built['base_model']}.",
        "",
        head,
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, fig in built["arms"].items():
        retrieval = fig.get("retrieval") or {}
        train = fig["train_sample"]
        gap = f"{_cell(train['f1'])} ({_cell(fig['train_minus_test_f1'])})" if train["questions"] else "-"
        lines.append(
            f"| {arm} | {_cell(fig['em'])} | {_cell(fig['f1'])} | {gap} | {_cell(retrieval.get('hit_at_k'), 3)} | "
            f"{_cell(retrieval.get('recall_at_k'), 3)} | {_cell(fig['latency_p50_ms'], 0)} | "
            f"{_cell(fig['latency_p95_ms'], 0)} | {_cell(fig['output_tokens_per_s'])} | {cost_text(fig['cost'])} |"
        )
    lines += ["", "## Recommendation", "", *[f"- {line}" for line in built["recommendation"]], ""]
    if promotion := built.get("promotion"):
        lines += ["## Promotion", "", f"- {promotion_text(promotion)}", ""]
    lines += ["## Notes", "", *[f"- {note}" for note in built["notes"]], ""]
    return "\n".join(lines)


def promotion_text(p: dict[str, Any]) -> str:
    verdict = "promoted" if p["promoted"] else "not promoted"
    holder = f"holder {p['holder']}" if p["holder"] else "no holder"
    score = f"{p['metric']} {p['candidate_score']:.2f}"
    return f"{p['alias']}: {p['candidate']} {verdict} ({score}; {holder}): {p['reason']}"


def cost_text(cost: dict[str, Any]) -> str:
    parts = []
    if index := cost.get("index"):
        parts.append(f"index {index['index_build_s']:.0f}s, {index['chunks']} chunks")
    if (training := cost.get("training")) and training.get("train_wall_s") is not None:
        cpu = training.get("train_cpu_s")
        cpu_text = f" ({cpu:.0f} CPU s)" if cpu else ""
        parts.append(f"training {training['train_wall_s']}s{cpu_text}, {training['trained_tokens']} tokens")
    return "; ".join(parts) or "none"


def chart_points(built: dict[str, Any]) -> list[ChartPoint]:
    """The arms with a score and a latency, in the report's order."""
    return [
        ChartPoint(arm, fig["f1"], fig["latency_p50_ms"], fig["latency_p95_ms"])
        for arm, fig in built["arms"].items()
        if fig["f1"] is not None and fig["latency_p50_ms"] is not None
    ]


def write_all(built: dict[str, Any], folder: Path) -> dict[str, str]:
    files = {"json": folder / "report.json", "markdown": folder / "report.md", "chart": folder / CHART_NAME}
    files["chart"].write_text(quality_latency_svg(chart_points(built)), encoding="utf-8")
    built["files"] = {kind: str(path) for kind, path in files.items()}
    files["json"].write_text(json.dumps(built, indent=2) + "\n", encoding="utf-8")
    files["markdown"].write_text(to_markdown(built), encoding="utf-8")
    return built["files"]
