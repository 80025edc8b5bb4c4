"""``report.html``: the evaluation as a page people would rather look at than read. One
self-contained file (inline CSS and SVG, no script, nothing fetched), every value escaped:

- the four-arm table with confidence intervals, short-answer scores, groundedness and cost;
- quality against latency with error bars, the cost chart, and the paired-difference forest plot;
- example questions where each arm won or lost most against the base model, with every arm's
  answer, the passages it was given and the gold answers;
- the recommendation, the promotion decision and the notes.
"""

from __future__ import annotations

from html import escape
from typing import Any

from ragtune_eval.chart import ChartPoint, CostBar, ForestRow, cost_svg, forest_svg, quality_latency_svg
from ragtune_eval.significance import verdict

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; vertical-align: top; }
th:first-child, td:first-child, td.text { text-align: left; }
td.text { max-width: 360px; }
.ci { color: #777; font-size: 12px; }
.yes { color: #2a7a2a; font-weight: bold; }
.no { color: #777; }
.charts svg { max-width: 100%; height: auto; margin: 0.5em 0; }
details { margin: 2px 0; }
"""


def _number(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _with_ci(value: Any, ci: dict[str, Any] | None) -> str:
    if value is None:
        return "-"
    bounds = f'<br><span class="ci">[{ci["low"]:.1f}, {ci["high"]:.1f}]</span>' if ci else ""
    return f"{value:.1f}{bounds}"


def arm_table(built: dict[str, Any]) -> str:
    level = built["config"].get("promotion_level") or 0.95
    head = (
        "<tr><th>arm</th><th>EM</th><th>F1</th><th>short EM</th><th>short F1</th><th>p50 ms</th><th>p95 ms</th>"
        "<th>citation recall</th><th>citation precision</th><th>answer support</th><th>abstains when missed</th>"
        "<th>recipe</th></tr>"
    )
    rows = []
    for arm, fig in built["arms"].items():
        grounded = fig.get("grounding") or {}
        short = fig.get("short") or {}
        rows.append(
            f"<tr><td>{escape(arm)}</td><td>{_with_ci(fig.get('em'), fig.get('em_ci'))}</td>"
            f"<td>{_with_ci(fig.get('f1'), fig.get('f1_ci'))}</td>"
            f"<td>{_with_ci(short.get('em'), short.get('em_ci'))}</td>"
            f"<td>{_with_ci(short.get('f1'), short.get('f1_ci'))}</td>"
            f"<td>{_number(fig.get('latency_p50_ms'), 0)}</td><td>{_number(fig.get('latency_p95_ms'), 0)}</td>"
            f"<td>{_number(grounded.get('citation_recall'), 2)}</td>"
            f"<td>{_number(grounded.get('citation_precision'), 2)}</td>"
            f"<td>{_number(grounded.get('answer_support'), 2)}</td>"
            f"<td>{_number(grounded.get('abstention_when_missed'), 2)}</td>"
            f'<td class="text">{escape(str(fig.get("recipe") or "-"))}</td></tr>'
        )
    caption = f"<caption>scores in percent on held-out questions; brackets: {level:.0%} confidence interval</caption>"
    judged = [
        f"<p>LLM judge ({escape(str(j['model']))}) on {escape(arm)}: supported by the passages"
        f" {_number(j.get('supported'), 3)}, correct {_number(j.get('correct'), 3)} ({j['judged']} answers judged,"
        f" {j['unreadable']} replies unreadable).</p>"
        for arm, fig in built["arms"].items()
        if (j := fig.get("judge"))
    ]
    return f"<table>{caption}{head}{''.join(rows)}</table>{''.join(judged)}"


def comparison_table(built: dict[str, Any]) -> str:
    head = "<tr><th>candidate - baseline</th><th>F1 difference [CI]</th><th>EM difference [CI]</th><th>McNemar p</th>"
    head += "<th>verdict</th></tr>"
    rows = []
    for c in built.get("comparisons") or []:
        f1, em = c["f1"], c["em"]
        said = verdict(c)
        kind = "no" if said == "no detectable difference" else "yes"
        rows.append(
            f"<tr><td>{escape(c['candidate'])} - {escape(c['baseline'])}</td>"
            f"<td>{f1['difference']:+.1f} [{f1['low']:+.1f}, {f1['high']:+.1f}]</td>"
            f"<td>{em['difference']:+.1f} [{em['low']:+.1f}, {em['high']:+.1f}]</td>"
            f"<td>{_number(em.get('p_value'), 4)}</td><td><span class='{kind}'>{said}</span></td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>" if rows else "<p>No pair of arms to compare.</p>"


def forest_rows(built: dict[str, Any], metric: str = "f1") -> list[ForestRow]:
    """Each paired comparison's ``metric`` difference (a task report's ``score``) with its interval."""
    return [
        ForestRow(
            f"{c['candidate']} - {c['baseline']}",
            c[metric]["difference"],
            c[metric]["low"],
            c[metric]["high"],
            c[metric]["significant"],
        )
        for c in built.get("comparisons") or []
    ]


def cost_bars(built: dict[str, Any]) -> list[CostBar]:
    bars = []
    for arm, fig in built["arms"].items():
        cost = fig.get("cost") or {}
        parts = []
        if index := cost.get("index"):
            parts.append(("index build", float(index.get("index_build_s") or 0.0)))
        if training := cost.get("training"):
            parts.append(("training", float(training.get("train_wall_s") or 0.0)))
        bars.append(CostBar(arm, tuple(parts)))
    return bars


def example_table(built: dict[str, Any]) -> str:
    arms = list(built["arms"])
    head = "<tr><th>question</th><th>gold</th>" + "".join(f"<th>{escape(a)}</th>" for a in arms) + "</tr>"
    rows = []
    for ex in built.get("examples") or []:
        cells = []
        for arm in arms:
            answer = ex["answers"].get(arm)
            if answer is None:
                cells.append("<td>-</td>")
                continue
            passages = answer.get("passages") or []
            given = "".join(
                f"<details><summary>[{i}]</summary>{escape(text)}</details>" for i, text in enumerate(passages, 1)
            )
            cells.append(
                f'<td class="text">{escape(answer["prediction"])}<br><span class="ci">F1 {100 * answer["f1"]:.0f}'
                f"</span>{given}</td>"
            )
        note = f'<br><span class="ci">picked for {escape(ex["picked_for"])}</span>'
        gold = escape(" | ".join(ex["gold"]))
        rows.append(f'<tr><td class="text">{escape(ex["question"])}{note}</td><td class="text">{gold}</td>')
        rows[-1] += "".join(cells) + "</tr>"
    return f"<table>{head}{''.join(rows)}</table>" if rows else "<p>No examples (the base arm did not run).</p>"


def to_html(built: dict[str, Any], points: list[ChartPoint]) -> str:
    """The page; ``points`` are the quality/latency chart's (``report.chart_points``)."""
    config = built["config"]
    title = f"ragtune eval: {config.get('dataset')}"
    summary = (
        f"{config.get('train')} train / {config.get('test')} held-out questions, seed {config.get('seed')}, "
        f"base model {built.get('base_model')}."
    )
    recommendation = "".join(f"<li>{escape(line)}</li>" for line in built.get("recommendation") or [])
    notes = "".join(f"<li>{escape(note)}</li>" for note in built.get("notes") or [])
    promotion = ""
    if p := built.get("promotion"):
        verdict = "promoted" if p.get("promoted") else "not promoted"
        promotion = (
            f"<h2>Promotion</h2><p>{escape(str(p.get('alias')))}: {escape(str(p.get('candidate')))} {verdict}: "
            f"{escape(str(p.get('reason')))}</p>"
        )
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{STYLE}</style></head>'
        f"<body><h1>{escape(title)}</h1><p>{escape(summary)}</p>"
        f"<h2>Arms</h2>{arm_table(built)}"
        f"<h2>Recommendation</h2><ul>{recommendation}</ul>{promotion}"
        f"<h2>Paired differences</h2>{comparison_table(built)}"
        f'<div class="charts">{quality_latency_svg(points)}{forest_svg(forest_rows(built))}'
        f"{cost_svg(cost_bars(built))}</div>"
        f"<h2>Examples: wins and losses against the base model</h2>{example_table(built)}"
        f"<h2>Notes</h2><ul>{notes}</ul></body></html>\n"
    )
