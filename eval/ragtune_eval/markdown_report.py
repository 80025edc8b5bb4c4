"""``report.md``: the evaluation's figures as Markdown tables (the arms, their intervals, the paired
differences, groundedness), the recommendation, the promotion and the notes."""

from __future__ import annotations

import math
from typing import Any

from ragtune_eval.significance import verdict


def cell(value: Any, digits: int = 1) -> str:
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
        gap = f"{cell(train['f1'])} ({cell(fig['train_minus_test_f1'])})" if train["questions"] else "-"
        lines.append(
            f"| {arm} | {cell(fig['em'])} | {cell(fig['f1'])} | {gap} | {cell(retrieval.get('hit_at_k'), 3)} | "
            f"{cell(retrieval.get('recall_at_k'), 3)} | {cell(fig['latency_p50_ms'], 0)} | "
            f"{cell(fig['latency_p95_ms'], 0)} | {cell(fig['output_tokens_per_s'])} | {cost_text(fig['cost'])} |"
        )
    lines += ["", *interval_lines(built), *comparison_lines(built), *grounding_lines(built)]
    lines += ["## Recommendation", "", *[f"- {line}" for line in built["recommendation"]], ""]
    if promotion := built.get("promotion"):
        lines += ["## Promotion", "", f"- {promotion_text(promotion)}", ""]
    lines += ["## Notes", "", *[f"- {note}" for note in built["notes"]], ""]
    return "\n".join(lines)


def bounds(ci: dict[str, Any] | None) -> str:
    return f"[{ci['low']:.1f}, {ci['high']:.1f}]" if ci else "-"


def interval_lines(built: dict[str, Any]) -> list[str]:
    lines = [
        "## Scores with confidence intervals",
        "",
        "| arm | EM | F1 | short-answer EM | short-answer F1 | recipe |",
        "|---|---|---|---|---|---|",
    ]
    for arm, fig in built["arms"].items():
        short = fig.get("short") or {}
        lines.append(
            f"| {arm} | {cell(fig['em'])} {bounds(fig.get('em_ci'))} | {cell(fig['f1'])} {bounds(fig.get('f1_ci'))}"
            f" | {cell(short.get('em'))} {bounds(short.get('em_ci'))} | {cell(short.get('f1'))}"
            f" {bounds(short.get('f1_ci'))} | {fig.get('recipe') or '-'} |"
        )
    return [*lines, ""]


def comparison_lines(built: dict[str, Any]) -> list[str]:
    if not built.get("comparisons"):
        return []
    lines = [
        "## Paired differences (candidate - baseline, same questions)",
        "",
        "| candidate - baseline | F1 [CI] | EM [CI] | McNemar p (EM) | verdict |",
        "|---|---|---|---|---|",
    ]
    for c in built["comparisons"]:
        f1, em = c["f1"], c["em"]
        lines.append(
            f"| {c['candidate']} - {c['baseline']} | {f1['difference']:+.1f} [{f1['low']:+.1f}, {f1['high']:+.1f}] | "
            f"{em['difference']:+.1f} [{em['low']:+.1f}, {em['high']:+.1f}] | {cell(em['p_value'], 4)} | "
            f"{verdict(c)} |"
        )
    return [*lines, ""]


def grounding_lines(built: dict[str, Any]) -> list[str]:
    grounded = {arm: fig["grounding"] for arm, fig in built["arms"].items() if fig.get("grounding")}
    if not grounded:
        return []
    lines = [
        "## Groundedness of the RAG answers",
        "",
        "| arm | citation recall | citation precision | answer support | abstains when retrieval missed | cites |",
        "|---|---|---|---|---|---|",
    ]
    for arm, g in grounded.items():
        lines.append(
            f"| {arm} | {cell(g['citation_recall'], 3)} | {cell(g['citation_precision'], 3)} | "
            f"{cell(g['answer_support'], 3)} | {cell(g['abstention_when_missed'], 3)} | "
            f"{cell(g['cited_share'], 3)} |"
        )
    judged = {arm: fig["judge"] for arm, fig in built["arms"].items() if fig.get("judge")}
    for arm, j in judged.items():
        lines.append(
            f"\nLLM judge ({j['model']}) on {arm}: supported by the passages {cell(j['supported'], 3)},"
            f" correct {cell(j['correct'], 3)} ({j['judged']} answers judged, {j['unreadable']} replies unreadable)."
        )
    return [*lines, ""]


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
