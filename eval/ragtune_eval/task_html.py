"""``report.html`` of a task evaluation: the page a product owner opens. One self-contained file
(inline CSS and SVG, no script, nothing fetched), every value escaped. It shows what ``report.md``
shows (the same tables, ``ragtune_eval.task_markdown.tables``) with the recommendation first and
three charts: the headline score against latency per arm, the paired differences as a forest plot
and what each arm cost to build."""

from __future__ import annotations

from html import escape
from typing import Any

from ragtune_eval.chart import cost_svg, forest_svg, quality_latency_svg
from ragtune_eval.html_report import STYLE, cost_bars, forest_rows
from ragtune_eval.report import chart_points
from ragtune_eval.task_markdown import Table, arm_table, summary_line, tables


def _table(table: Table, heading: bool = True) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.head)
    text = ' class="text"'
    rows = "".join(
        "<tr>" + "".join(f"<td{text if i else ''}>{escape(v)}</td>" for i, v in enumerate(row)) + "</tr>"
        for row in table.rows
    )
    return (
        (f"<h2>{escape(table.title)}</h2>" if heading else "")
        + (f"<p>{escape(table.before)}</p>" if table.before else "")
        + f"<table><tr>{head}</tr>{rows}</table>"
        + (f'<p class="ci">{escape(table.after)}</p>' if table.after else "")
    )


def to_task_html(built: dict[str, Any]) -> str:
    headline = str(built["headline"])
    title = f"ragtune eval ({built['kind']}): {built['config'].get('dataset')}"
    level = built["config"].get("promotion_level") or 0.95
    recommendation = "".join(f"<li>{escape(line)}</li>" for line in built.get("recommendation") or [])
    notes = "".join(f"<li>{escape(note)}</li>" for note in built.get("notes") or [])
    charts = (
        quality_latency_svg(chart_points(built, "score"), f"{headline} on held-out items (%)")
        + forest_svg(forest_rows(built, "score"), f"Paired differences in {headline} (points)")
        + cost_svg(cost_bars(built))
    )
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{STYLE}</style></head>'
        f"<body><h1>{escape(title)}</h1><p>{escape(summary_line(built))}</p>"
        f"<h2>Recommendation</h2><ul>{recommendation}</ul>"
        f"<h2>Arms</h2><p class='ci'>scores in percent; brackets: {level:.0%} confidence interval</p>"
        f"{_table(arm_table(built), heading=False)}"
        f'<div class="charts">{charts}</div>'
        + "".join(_table(t) for t in tables(built))
        + f"<h2>Notes</h2><ul>{notes}</ul></body></html>\n"
    )
