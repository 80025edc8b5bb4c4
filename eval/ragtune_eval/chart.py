"""The report's chart, quality against latency per arm, as a self-contained SVG written by hand (no
plotting library): token F1 against the median latency, a bar out to the p95, each point labelled,
both axes with ticks. Text is escaped, so arm names cannot inject markup."""

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


def quality_latency_svg(points: list[ChartPoint]) -> str:
    """The chart as SVG text (UTF-8, standalone)."""
    x_ticks = nice_ticks(max((p.p95_ms for p in points), default=0.0) * 1.05)
    y_ticks = nice_ticks(max(max((p.f1 for p in points), default=0.0), 10.0))
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
    parts.append(text(18, middle, Y_LABEL, text_anchor="middle", transform=f"rotate(-90 18 {middle})"))
    for i, point in enumerate(points):
        colour = COLOURS[i % len(COLOURS)]
        px, p95, py = x(point.p50_ms), x(point.p95_ms), y(point.f1)
        parts.append(f'<g class="arm" fill={quoteattr(colour)} stroke={quoteattr(colour)}>')
        parts.append(f'<line x1="{px}" y1="{py}" x2="{p95}" y2="{py}"/>')
        parts.append(f'<line x1="{p95}" y1="{py - 4}" x2="{p95}" y2="{py + 4}"/>')
        parts.append(f'<circle cx="{px}" cy="{py}" r="4"/>')
        parts.append(text(px + 6, py - 6, point.label, stroke="none"))
        parts.append("</g>")
    if not points:
        parts.append(text(LEFT + plot_w / 2, middle, "no scored arm", text_anchor="middle", fill="#777"))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
