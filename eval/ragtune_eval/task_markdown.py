"""``report.md`` of a task evaluation: the task, the four-arm table with intervals, the task's own
metrics, each arm's prompt and recipe, the paired differences, the learning curve, the
recommendation and the notes. The tables are built once as (head, rows) of text
(:func:`tables`), which ``ragtune_eval.task_html`` renders as the page."""

from __future__ import annotations

from typing import Any, NamedTuple

from ragtune_eval.markdown_report import bounds, cell, cost_text


class Table(NamedTuple):
    title: str
    head: list[str]
    rows: list[list[str]]
    before: str = ""  # a sentence above the table
    after: str = ""  # a sentence below it


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


def summary_line(built: dict[str, Any]) -> str:
    cfg, task = built["config"], built["task"]
    return (
        f"{task['train_items']} training / {task['test_items']} held-out items, seed {cfg.get('seed')},"
        f" base model {built['base_model']}."
    )


def arm_table(built: dict[str, Any]) -> Table:
    kind = built["kind"]
    head = ["arm", f"{built['headline']} [CI]", *METRIC_HEADS[kind]]
    head += ["train (gap)", "p50 / p95 ms", "prompt tokens", "cost"]
    rows = []
    for arm, fig in built["arms"].items():
        train = fig["train_sample"]
        gap = f"{cell(train['score'])} ({cell(fig['train_minus_test'])})" if train["items"] else "-"
        rows.append(
            [
                arm,
                f"{cell(fig['score'])} {bounds(fig.get('score_ci'))}",
                *metric_cells(kind, fig["metrics"], fig.get("macro_f1_ci")),
                gap,
                f"{cell(fig['latency_p50_ms'], 0)} / {cell(fig['latency_p95_ms'], 0)}",
                cell(fig["mean_prompt_tokens"], 0),
                cost_text(fig["cost"]),
            ]
        )
    return Table("Arms", head, rows)


def prompt_table(built: dict[str, Any]) -> Table:
    instructions = built["task"]["instructions"].replace("\n", " ")
    rows = [[arm, fig.get("prompt") or "-", fig.get("recipe") or "-"] for arm, fig in built["arms"].items()]
    before = f"Instructions (every arm's system turn): {instructions}"
    return Table("Prompts and recipes", ["arm", "prompt", "recipe"], rows, before)


def _difference(found: dict[str, Any]) -> str:
    mark = " *" if found["significant"] else ""
    return f"{found['difference']:+.1f} [{found['low']:+.1f}, {found['high']:+.1f}]{mark}"


def _p_value(p: float | None) -> str:
    return "< 0.0001" if p is not None and p < 1e-4 else cell(p, 4)


def comparison_table(built: dict[str, Any]) -> Table | None:
    if not built.get("comparisons"):
        return None
    extra = {"extraction": ("exact", "exact"), "classification": ("macro_f1", "macro-F1")}.get(built["kind"])
    head = ["candidate - baseline", f"{built['headline']} [CI]", "p (McNemar)"] + (
        [f"{extra[1]} [CI]"] if extra else []
    )
    rows = []
    for c in built["comparisons"]:
        row = [f"{c['candidate']} - {c['baseline']}", _difference(c["score"]), _p_value(c["score"]["p_value"])]
        if extra:
            row.append(_difference(c[extra[0]]) if c.get(extra[0]) else "-")
        rows.append(row)
    title = "Paired differences (candidate - baseline, same items)"
    return Table(title, head, rows, after="(* the interval excludes zero)")


def detail_table(built: dict[str, Any]) -> Table | None:
    """Classification: the most-confused pairs per arm; extraction: per-field P / R / F1."""
    arms = built["arms"]
    if built["kind"] == "classification":
        rows = []
        for arm, fig in arms.items():
            pairs = fig["metrics"].get("most_confused") or []
            rows.append([arm, "; ".join(f"{p['gold']} -> {p['predicted']} ({p['count']})" for p in pairs) or "none"])
        return Table("Most confused (gold -> answered)", ["arm", "pairs (count)"], rows)
    if built["kind"] == "extraction":
        fields = sorted({f for fig in arms.values() for f in fig["metrics"].get("per_field", {})})
        rows = []
        for name in fields:
            cells = [name]
            for fig in arms.values():
                f = fig["metrics"]["per_field"].get(name)
                cells.append(f"{cell(f['precision'])} / {cell(f['recall'])} / {cell(f['f1'])}" if f else "-")
            rows.append(cells)
        return Table("Per field: precision / recall / F1", ["field", *arms], rows)
    return None


def retrieval_table(built: dict[str, Any]) -> Table | None:
    """Classification: what the retrieved examples alone would have answered, beside each retrieval arm."""
    found = {arm: fig["retrieved_labels"] for arm, fig in built["arms"].items() if fig.get("retrieved_labels")}
    if not found:
        return None
    head = [
        "arm",
        "accuracy",
        "gold label shown",
        "nearest example's label",
        "majority of shown",
        "answer is a shown label",
    ]
    rows = [
        [
            arm,
            cell(built["arms"][arm]["score"]),
            cell(f["gold_shown"]),
            cell(f["nearest_is_gold"]),
            cell(f["vote_is_gold"]),
            cell(f["answer_shown"]),
        ]
        for arm, f in found.items()
    ]
    before = (
        "What the search put in the prompt, in percent of held-out items: how often the gold label was among the"
        " examples shown, how often the most similar example's label (or the majority label of those shown) was"
        " the gold one, i.e. the accuracy of the search alone as a nearest-neighbour classifier."
    )
    return Table("What retrieval showed the model", head, rows, before)


def curve_table(built: dict[str, Any]) -> Table | None:
    curve = built.get("learning_curve")
    if not curve:
        return None
    unit = "examples per label" if built["config"].get("per_class") else "training examples"
    rows = [[str(row["size"]), _score(row.get("rag")), _score(row.get("ft"))] for row in curve]
    return Table("Learning curve", [unit, "rag (few-shot) [CI]", "ft [CI]"], rows)


def tables(built: dict[str, Any]) -> list[Table]:
    """The report's tables after the arm table, in order."""
    found = [
        prompt_table(built),
        comparison_table(built),
        detail_table(built),
        retrieval_table(built),
        curve_table(built),
    ]
    return [t for t in found if t is not None]


def _markdown(table: Table, title: bool = True) -> list[str]:
    lines = [f"## {table.title}", ""] if title else []
    if table.before:
        lines += [table.before, ""]
    lines += ["| " + " | ".join(table.head) + " |", "|" + "---|" * len(table.head)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return [*lines, "", *([table.after, ""] if table.after else [])]


def to_task_markdown(built: dict[str, Any]) -> str:
    lines = [f"# ragtune eval ({built['kind']}): {built['config'].get('dataset')}", "", summary_line(built), ""]
    lines += _markdown(arm_table(built), title=False)
    for table in tables(built):
        lines += _markdown(table)
    lines += ["## Recommendation", "", *[f"- {line}" for line in built["recommendation"]], ""]
    lines += ["## Notes", "", *[f"- {note}" for note in built["notes"]], ""]
    return "\n".join(lines)
