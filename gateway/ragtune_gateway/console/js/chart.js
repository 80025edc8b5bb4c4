// A small line chart as inline SVG: series of (x, y) points, axes with a few ticks, a circle per
// point (so a test can count what was drawn).

import { h, s } from "./dom.js";

function ticks(lo, hi, count) {
  if (hi === lo) return [lo];
  const step = (hi - lo) / count;
  return Array.from({ length: count + 1 }, (_, i) => lo + i * step);
}

function format(v) {
  return Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(2);
}

/** lineChart([{name, points: [[x, y], ...]}], {xLabel, yLabel}) -> an element (legend + svg). */
export function lineChart(series, { xLabel = "", yLabel = "", width = 640, height = 260, id } = {}) {
  const pad = { left: 48, right: 12, top: 12, bottom: 34 };
  const all = series.flatMap((one) => one.points);
  const svg = s("svg", { class: "chart", id, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": yLabel });
  if (!all.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no points yet"));
    return h("div", {}, svg);
  }
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => pad.left + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const Y = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
  for (const t of ticks(y0, y1, 4)) {
    svg.append(s("line", { class: "grid", x1: pad.left, x2: width - pad.right, y1: Y(t), y2: Y(t) }));
    svg.append(s("text", { x: pad.left - 6, y: Y(t) + 4, "text-anchor": "end" }, format(t)));
  }
  for (const t of ticks(x0, x1, Math.min(6, Math.max(1, x1 - x0)))) {
    svg.append(s("text", { x: X(t), y: height - pad.bottom + 16, "text-anchor": "middle" }, format(t)));
  }
  svg.append(s("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: height - pad.bottom, y2: height - pad.bottom }));
  svg.append(s("line", { class: "axis", x1: pad.left, x2: pad.left, y1: pad.top, y2: height - pad.bottom }));
  svg.append(s("text", { x: width / 2, y: height - 4, "text-anchor": "middle" }, xLabel));
  series.forEach((one, i) => {
    const points = [...one.points].sort((a, b) => a[0] - b[0]);
    const group = s("g", { class: `series-${i}`, "data-series": one.name });
    if (points.length > 1) group.append(s("polyline", { points: points.map(([x, y]) => `${X(x)},${Y(y)}`).join(" ") }));
    for (const [x, y] of points) {
      group.append(s("circle", { class: "point", cx: X(x), cy: Y(y), r: 3 }, s("title", {}, `${one.name} step ${x}: ${format(y)}`)));
    }
    svg.append(group);
  });
  const legend = h("div", { class: "legend" }, series.map((one, i) => h("span", { class: `k${i}` }, `● ${one.name}`)));
  return h("div", {}, legend, svg);
}
