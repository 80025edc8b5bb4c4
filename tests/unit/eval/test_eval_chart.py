"""The report's chart: a well-formed SVG (parsed as XML) with a labelled point, a p95 bar and ticks
per arm, and text that cannot inject markup."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ragtune_eval.chart import ChartPoint, nice_ticks, quality_latency_svg
from ragtune_eval.report import chart_points

SVG = "{http://www.w3.org/2000/svg}"


def test_nice_ticks_cover_the_range_in_round_steps() -> None:
    assert nice_ticks(385.0) == [0, 100, 200, 300, 400]
    assert nice_ticks(9.0) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(0.0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]  # nothing measured: still an axis


def test_chart_is_well_formed_svg_with_a_point_per_arm() -> None:
    points = [ChartPoint("base", 10.0, 120.0, 150.0), ChartPoint("rag+ft", 55.0, 250.0, 385.0)]
    root = ET.fromstring(quality_latency_svg(points))
    assert root.tag == f"{SVG}svg"
    arms = root.findall(f"{SVG}g[@class='arm']")
    assert [g.find(f"{SVG}text").text for g in arms] == ["base", "rag+ft"]  # type: ignore[union-attr]
    circles = [g.find(f"{SVG}circle") for g in arms]
    bars = [g.findall(f"{SVG}line")[0] for g in arms]
    for circle, bar in zip(circles, bars, strict=True):
        assert circle is not None and bar.get("x1") == circle.get("cx") and bar.get("y1") == circle.get("cy")
        assert float(bar.get("x2", 0)) > float(bar.get("x1", 0))  # the bar reaches out to the p95
    # the higher F1 is drawn higher up; the slower arm further right
    assert float(circles[1].get("cy", 0)) < float(circles[0].get("cy", 0))  # type: ignore[union-attr]
    assert float(circles[1].get("cx", 0)) > float(circles[0].get("cx", 0))  # type: ignore[union-attr]
    labels = {t.text for t in root.iter(f"{SVG}text")}
    assert {"0", "100", "400", "20", "60"} <= labels  # x ticks up to past the slowest p95, y ticks past the best F1
    assert "token F1 on held-out questions (%)" in labels


def test_chart_text_is_escaped_and_an_empty_report_still_draws() -> None:
    hostile = ChartPoint('<script>alert("x")</script>&', 1.0, 1.0, 2.0)
    root = ET.fromstring(quality_latency_svg([hostile]))
    assert not list(root.iter(f"{SVG}script"))
    assert '<script>alert("x")</script>&' in {t.text for t in root.iter(f"{SVG}text")}
    empty = ET.fromstring(quality_latency_svg([]))
    assert "no scored arm" in {t.text for t in empty.iter(f"{SVG}text")}


def test_unscored_arms_are_left_out_of_the_chart() -> None:
    figures = {"f1": 20.0, "latency_p50_ms": 100.0, "latency_p95_ms": 140.0}
    built = {"arms": {"base": figures, "ft": {"f1": None, "latency_p50_ms": None, "latency_p95_ms": None}}}
    assert chart_points(built) == [ChartPoint("base", 20.0, 100.0, 140.0)]
