"""The report's charts as self-contained SVG written by hand (no plotting library), text escaped so
arm names cannot inject markup:

- quality against latency per arm: token F1 against the median latency, a bar out to the p95, the
  F1's confidence interval as a vertical bar, each point labelled, both axes with ticks;
- the paired differences between arms as a forest plot (difference and interval, a line at zero);
- the cost of each arm (index build and training wall-clock seconds) as horizontal bars."""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

WIDTH, HEIGHT = 640, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 30, 40, 60  # margins around the plot area
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
TITLE = "Quality against latency per arm"
X_LABEL = "latency per question, ms (p50, bar to p95)"
Y_LABEL = "token F1 on held-out questions (%)"


@dataclass(frozen=True)
class ChartPoint:
    label: str
    f1: float  # percent
    p50_ms: float
    p95_ms: float
    f1_low: float | None = None  # the F1's confidence interval, when known
    f1_high: float | None = None


@dataclass(frozen=True)
class ForestRow:
    label: str  # e.g. "rag+ft - rag"
    value: float
    low: float
    high: float
    significant: bool


@dataclass(frozen=True)
class CostBar:
    label: str
    parts: tuple[tuple[str, float], ...]  # (what, seconds), stacked


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Ticks from 0 to at least ``high`` at a step of 1, 2 or 5 times a power of ten."""
    if not math.isfinite(high) or high <= 0:
        high = 1.0
    raw = high / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [round(i * step, 10) for i in range(math.ceil(high / step - 1e-9) + 1)]


def _tick_text(value: float) -> str:
    return f"{value:g}"


def quality_latency_svg(points: list[ChartPoint], y_label: str = Y_LABEL) -> str:
    """The chart as SVG text (UTF-8, standalone); ``y_label`` names the score (a task's metric)."""
    x_ticks = nice_ticks(max((p.p95_ms for p in points), default=0.0) * 1.05)
    y_ticks = nice_ticks(max(max((p.f1_high or p.f1 for p in points), default=0.0), 10.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(value: float) -> float:
        return round(LEFT + plot_w * value / x_ticks[-1], 1)

    def y(value: float) -> float:
        return round(TOP + plot_h * (1 - value / y_ticks[-1]), 1)

    def text(px: float, py: float, body: str, **attrs: str) -> str:
        extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attrs.items())
        return f'<text x="{px}" y="{py}"{extra}>{escape(body)}</text>'

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(TITLE)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        text(WIDTH / 2, 22, TITLE, text_anchor="middle", font_size="15"),
    ]
    bottom, right = y(0), x(x_ticks[-1])
    for value in x_ticks:
        px = x(value)
        parts.append(f'<line x1="{px}" y1="{TOP}" x2="{px}" y2="{bottom}" stroke="#e5e5e5"/>')
        parts.append(f'<line x1="{px}" y1="{bottom}" x2="{px}" y2="{bottom + 5}" stroke="black"/>')
        parts.append(text(px, bottom + 18, _tick_text(value), text_anchor="middle"))
    for value in y_ticks:
        py = y(value)
        parts.append(f'<line x1="{LEFT}" y1="{py}" x2="{right}" y2="{py}" stroke="#e5e5e5"/>')
        parts.append(f'<line x1="{LEFT - 5}" y1="{py}" x2="{LEFT}" y2="{py}" stroke="black"/>')
        parts.append(text(LEFT - 8, py + 4, _tick_text(value), text_anchor="end"))
    parts.append(f'<polyline points="{LEFT},{TOP} {LEFT},{bottom} {right},{bottom}" fill="none" stroke="black"/>')
    parts.append(text(LEFT + plot_w / 2, HEIGHT - 15, X_LABEL, text_anchor="middle"))
    middle = TOP + plot_h / 2
    parts.append(text(18, middle, y_label, text_anchor="middle", transform=f"rotate(-90 18 {middle})"))
    for i, point in enumerate(points):
        colour = COLOURS[i % len(COLOURS)]
        px, p95, py = x(point.p50_ms), x(point.p95_ms), y(point.f1)
        parts.append(f'<g class="arm" fill={quoteattr(colour)} stroke={quoteattr(colour)}>')
        parts.append(f'<line x1="{px}" y1="{py}" x2="{p95}" y2="{py}"/>')
        parts.append(f'<line x1="{p95}" y1="{py - 4}" x2="{p95}" y2="{py + 4}"/>')
        if point.f1_low is not None and point.f1_high is not None:
            low, high = y(max(point.f1_low, 0.0)), y(point.f1_high)
            parts.append(f'<line class="ci" x1="{px}" y1="{low}" x2="{px}" y2="{high}"/>')
        parts.append(f'<circle cx="{px}" cy="{py}" r="4"/>')
        parts.append(text(px + 6, py - 6, point.label, stroke="none"))
        parts.append("</g>")
    if not points:
        parts.append(text(LEFT + plot_w / 2, middle, "no scored arm", text_anchor="middle", fill="#777"))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _open(width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]


def forest_svg(rows: list[ForestRow], title: str = "Paired differences in F1 (points)") -> str:
    """Each comparison's difference with its interval; filled when the interval excludes zero."""
    row_h, left, right = 28, 150, 30
    height = TOP + BOTTOM + row_h * max(len(rows), 1)
    span = max([abs(v) for r in rows for v in (r.low, r.high)] + [1.0])
    ticks = nice_ticks(span)
    limit = ticks[-1]
    plot_w = WIDTH - left - right

    def x(value: float) -> float:
        return round(left + plot_w * (value + limit) / (2 * limit), 1)

    parts = _open(WIDTH, height, title)
    bottom = height - BOTTOM
    for value in [-t for t in reversed(ticks[1:])] + ticks:
        px = x(value)
        parts.append(f'<line x1="{px}" y1="{TOP}" x2="{px}" y2="{bottom}" stroke="#eeeeee"/>')
        parts.append(f'<text x="{px}" y="{bottom + 18}" text-anchor="middle">{_tick_text(value)}</text>')
    parts.append(f'<line x1="{x(0)}" y1="{TOP}" x2="{x(0)}" y2="{bottom}" stroke="black"/>')
    for i, row in enumerate(rows):
        py = TOP + row_h * i + row_h / 2
        colour = COLOURS[0] if row.significant else "#999999"
        fill = colour if row.significant else "white"
        parts.append(f'<g class="comparison" stroke={quoteattr(colour)}>')
        parts.append(f'<line x1="{x(row.low)}" y1="{py}" x2="{x(row.high)}" y2="{py}"/>')
        parts.append(f'<rect x="{x(row.value) - 4}" y="{py - 4}" width="8" height="8" fill={quoteattr(fill)}/>')
        parts.append(f'<text x="{left - 8}" y="{py + 4}" text-anchor="end" stroke="none">{escape(row.label)}</text>')
        parts.append("</g>")
    if not rows:
        parts.append(f'<text x="{WIDTH / 2}" y="{TOP + 14}" text-anchor="middle" fill="#777">no comparison</text>')
    label = "difference, candidate - baseline (filled: the interval excludes zero)"
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 15}" text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def cost_svg(bars: list[CostBar], title: str = "What each arm cost to build (seconds)") -> str:
    """Stacked horizontal bars: each arm's index build and training wall-clock."""
    row_h, left, right = 28, 90, 150
    height = TOP + BOTTOM + row_h * max(len(bars), 1)
    ticks = nice_ticks(max([sum(v for _, v in b.parts) for b in bars] + [1.0]))
    plot_w = WIDTH - left - right
    kinds = list(dict.fromkeys(kind for b in bars for kind, _ in b.parts))

    def x(value: float) -> float:
        return round(left + plot_w * value / ticks[-1], 1)

    parts = _open(WIDTH, height, title)
    bottom = height - BOTTOM
    for value in ticks:
        px = x(value)
        parts.append(f'<line x1="{px}" y1="{TOP}" x2="{px}" y2="{bottom}" stroke="#eeeeee"/>')
        parts.append(f'<text x="{px}" y="{bottom + 18}" text-anchor="middle">{_tick_text(value)}</text>')
    for i, bar in enumerate(bars):
        py, start = TOP + row_h * i + 4, 0.0
        parts.append(f'<text x="{left - 8}" y="{py + 14}" text-anchor="end">{escape(bar.label)}</text>')
        for kind, seconds in bar.parts:
            colour = COLOURS[kinds.index(kind) % len(COLOURS)]
            width = round(x(start + seconds) - x(start), 1)
            parts.append(
                f'<rect class="cost" x="{x(start)}" y="{py}" width="{width}" height="{row_h - 8}" '
                f"fill={quoteattr(colour)}><title>{escape(f'{kind}: {seconds:.0f} s')}</title></rect>"
            )
            start += seconds
    for i, kind in enumerate(kinds):
        py = TOP + 18 * i
        colour = COLOURS[i % len(COLOURS)]
        parts.append(f'<rect x="{WIDTH - right + 12}" y="{py}" width="12" height="12" fill={quoteattr(colour)}/>')
        parts.append(f'<text x="{WIDTH - right + 30}" y="{py + 11}">{escape(kind)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
