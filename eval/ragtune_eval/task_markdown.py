"""``report.md`` of a task evaluation: the task, the four-arm table with intervals, the task's own
metrics, each arm's prompt and recipe, the paired differences, the learning curve, the
recommendation and the notes."""

from __future__ import annotations

from typing import Any

from ragtune_eval.markdown_report import bounds, cell, cost_text


def _score(found: dict[str, Any] | None) -> str:
    return f"{cell(found.get('score'))} {bounds(found.get('ci'))}" if found else "-"


def metric_cells(kind: str, metrics: dict[str, Any], macro_f1_ci: dict[str, Any] | None = None) -> list[str]:
    if kind == "classification":
        return [
            f"{cell(metrics.get('macro_f1'))} {bounds(macro_f1_ci) if macro_f1_ci else ''}".strip(),
            cell(metrics.get("valid_share"), 3),
            cell(metrics.get("lenient_accuracy")),
        ]
    if kind == "extraction":
        micro = metrics.get("micro") or {}
        return [
            f"{cell(micro.get('precision'))} / {cell(micro.get('recall'))} / {cell(micro.get('f1'))}",
            cell(metrics.get("exact")),
            f"{cell(metrics.get('parse_share'), 3)} / {cell(metrics.get('valid_share'), 3)}",
        ]
    return [cell(metrics.get("format_share"), 3), cell(metrics.get("lenient_accuracy"))]


METRIC_HEADS = {
    "classification": ["macro-F1", "is a label", "names one label"],
    "extraction": ["micro P / R / F1", "exact", "parses / validates"],
    "answer": ["format followed", "lenient accuracy"],
}


def to_task_markdown(built: dict[str, Any]) -> str:
    kind, cfg, task = built["kind"], built["config"], built["task"]
    heads = ["arm", f"{built['headline']} [CI]", *METRIC_HEADS[kind]]
    heads += ["train (gap)", "p50 / p95 ms", "prompt tokens", "cost"]
    lines = [
        f"# ragtune eval ({kind}): {cfg.get('dataset')}",
        "",
        f"{task['train_items']} training / {task['test_items']} held-out items, seed {cfg.get('seed')},"
        f" base model {built['base_model']}.",
        "",
        "| " + " | ".join(heads) + " |",
        "|" + "---|" * len(heads),
    ]
    for arm, fig in built["arms"].items():
        train = fig["train_sample"]
        gap = f"{cell(train['score'])} ({cell(fig['train_minus_test'])})" if train["items"] else "-"
        cells = [
            arm,
            f"{cell(fig['score'])} {bounds(fig.get('score_ci'))}",
            *metric_cells(kind, fig["metrics"], fig.get("macro_f1_ci")),
            gap,
            f"{cell(fig['latency_p50_ms'], 0)} / {cell(fig['latency_p95_ms'], 0)}",
            cell(fig["mean_prompt_tokens"], 0),
            cost_text(fig["cost"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *prompt_lines(built), *comparison_lines(built), *detail_lines(built), *curve_lines(built)]
    lines += ["## Recommendation", "", *[f"- {line}" for line in built["recommendation"]], ""]
    lines += ["## Notes", "", *[f"- {note}" for note in built["notes"]], ""]
    return "\n".join(lines)


def prompt_lines(built: dict[str, Any]) -> list[str]:
    instructions = built["task"]["instructions"].replace("\n", " ")
    lines = ["## Prompts and recipes", "", f"Instructions (every arm's system turn): {instructions}", ""]
    lines += ["| arm | prompt | recipe |", "|---|---|---|"]
    for arm, fig in built["arms"].items():
        lines.append(f"| {arm} | {fig.get('prompt') or '-'} | {fig.get('recipe') or '-'} |")
    return [*lines, ""]


def _difference(found: dict[str, Any]) -> str:
    mark = " *" if found["significant"] else ""
    return f"{found['difference']:+.1f} [{found['low']:+.1f}, {found['high']:+.1f}]{mark}"


def comparison_lines(built: dict[str, Any]) -> list[str]:
    if not built.get("comparisons"):
        return []
    headline = built["headline"]
    extra = {"extraction": ("exact", "exact"), "classification": ("macro_f1", "macro-F1")}.get(built["kind"])
    head = f"| candidate - baseline | {headline} [CI] | p (McNemar) |" + (f" {extra[1]} [CI] |" if extra else "")
    lines = ["## Paired differences (candidate - baseline, same items)", "", head]
    lines.append("|---|---|---|" + ("---|" if extra else ""))
    for c in built["comparisons"]:
        s = c["score"]
        row = f"| {c['candidate']} - {c['baseline']} | {_difference(s)}"
        p = s["p_value"]
        row += f" | {'< 0.0001' if p is not None and p < 1e-4 else cell(p, 4)} |"
        if extra and c.get(extra[0]):
            row += f" {_difference(c[extra[0]])} |"
        elif extra:
            row += " - |"
        lines.append(row)
    return [*lines, "", "(* the interval excludes zero)", ""]


def detail_lines(built: dict[str, Any]) -> list[str]:
    """Classification: the most-confused pairs per arm; extraction: per-field P / R / F1."""
    lines: list[str] = []
    if built["kind"] == "classification":
        lines += ["## Most confused (gold -> answered)", ""]
        for arm, fig in built["arms"].items():
            pairs = fig["metrics"].get("most_confused") or []
            text = "; ".join(f"{p['gold']} -> {p['predicted']} ({p['count']})" for p in pairs) or "none"
            lines.append(f"- {arm}: {text}")
        lines.append("")
    elif built["kind"] == "extraction":
        fields = sorted({f for fig in built["arms"].values() for f in fig["metrics"].get("per_field", {})})
        lines += ["## Per field: precision / recall / F1", "", "| field | " + " | ".join(built["arms"]) + " |"]
        lines.append("|---|" + "---|" * len(built["arms"]))
        for name in fields:
            cells = []
            for fig in built["arms"].values():
                f = fig["metrics"]["per_field"].get(name)
                cells.append(f"{cell(f['precision'])} / {cell(f['recall'])} / {cell(f['f1'])}" if f else "-")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def curve_lines(built: dict[str, Any]) -> list[str]:
    curve = built.get("learning_curve")
    if not curve:
        return []
    unit = "examples per label" if built["config"].get("per_class") else "training examples"
    lines = ["## Learning curve", "", f"| {unit} | rag (few-shot) [CI] | ft [CI] |", "|---|---|---|"]
    lines += [f"| {row['size']} | {_score(row.get('rag'))} | {_score(row.get('ft'))} |" for row in curve]
    return [*lines, ""]
