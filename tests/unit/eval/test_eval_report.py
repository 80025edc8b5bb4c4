"""The evaluation report: figures from stored answers, costs per arm, the recommendation read off
the numbers, Markdown, and the chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ragtune_eval.markdown_report import to_markdown
from ragtune_eval.report import build_report, recommend, write_all

STATE: dict[str, Any] = {
    "base_model": "SmolLM2-135M-Instruct",
    "store": {"id": "vs_1", "build_s": 12.5, "upload_s": 1.0, "documents": 4, "chunks": 6, "text_bytes": 900},
    "jobs": {
        "ft": {"job_id": "ftjob-1", "model": "ft:a", "examples": 8, "train_wall_s": 40, "trained_tokens": 500},
        "rag+ft": {"job_id": "ftjob-2", "model": "ft:b", "examples": 8, "train_wall_s": 90, "trained_tokens": 4000},
    },
}


def rows(f1s: list[float], train_f1s: list[float], retrieval: bool = False) -> list[dict[str, Any]]:
    out = []
    for split, values in (("test", f1s), ("train", train_f1s)):
        for i, f1 in enumerate(values):
            row = {
                "id": f"{split}{i}",
                "split": split,
                "question": f"question {i} <b>?",
                "answers": ["gold"],
                "prediction": f"answer {i} [1]",
                "em": float(f1 == 1.0),
                "f1": f1,
                "latency_s": 0.1 * (i + 1),
                "prompt_tokens": 50,
                "completion_tokens": 4,
            }
            if retrieval:
                row.update(hit_at_k=float(i != 0), recall_at_k=float(i != 0), answer_in_passages=1.0)
                row["passages"] = ["the gold passage", "another"]
            out.append(row)
    return out


def sample_report() -> dict[str, Any]:
    results = {
        "base": rows([0.0, 0.2, 0.1, 0.1], [0.1, 0.1]),
        "rag": rows([1.0, 0.6, 0.8, 0.6], [0.7, 0.8], retrieval=True),
        "ft": rows([0.2, 0.2, 0.2, 0.2], [1.0, 1.0]),
        "rag+ft": rows([1.0, 0.6, 0.8, 0.65], [1.0, 0.9], retrieval=True),
    }
    return build_report({"dataset": "d.json", "train": 8, "test": 4, "seed": 0, "top_k": 3}, STATE, results)


def test_figures_per_arm() -> None:
    arms = sample_report()["arms"]
    rag = arms["rag"]
    assert rag["questions"] == 4 and rag["em"] == 25.0 and rag["f1"] == 75.0
    assert rag["latency_p50_ms"] == pytest.approx(250.0) and rag["latency_p95_ms"] == pytest.approx(385.0)
    assert rag["output_tokens_per_s"] == pytest.approx(16 / 1.0)
    assert rag["retrieval"] == {"questions": 4, "hit_at_k": 0.75, "recall_at_k": 0.75, "answer_in_passages": 1.0}
    assert rag["train_sample"] == {"questions": 2, "em": 0.0, "f1": 75.0}
    assert arms["ft"]["train_minus_test_f1"] == pytest.approx(80.0)
    assert "retrieval" not in arms["base"]
    assert arms["base"]["cost"] == {}
    assert arms["rag"]["cost"]["index"]["chunks"] == 6 and "training" not in arms["rag"]["cost"]
    assert arms["rag+ft"]["cost"]["training"]["trained_tokens"] == 4000
    assert arms["rag+ft"]["cost"]["index"]["index_build_s"] == 12.5


def test_recommendation_follows_the_numbers() -> None:
    lines = sample_report()["recommendation"]
    text = "\n".join(lines)
    assert "Retrieval over the base model" in text and ": +65.0 F1 (95% CI [" in text
    assert "ft: train F1 exceeds held-out F1 by 80.0 points" in text and "overfitting" in text
    # rag+ft is 1.25 F1 above rag on one question of four: no detectable difference, and rag is cheaper
    assert "A RAFT adapter on top of retrieval: no detectable difference, +1.2 F1" in text
    assert lines[-1].startswith("Recommended: rag (F1 75.0, no detectable difference from rag+ft")


def test_recommendation_picks_a_clear_winner() -> None:
    arms: dict[str, dict[str, Any]] = {
        "base": {"f1": 10.0, "train_minus_test_f1": 0.0},
        "rag": {"f1": 40.0, "train_minus_test_f1": 0.0, "retrieval": {"hit_at_k": 0.9}},
        "rag+ft": {"f1": 55.0, "train_minus_test_f1": 3.0},
    }
    significant = {"difference": 15.0, "low": 9.0, "high": 21.0, "level": 0.95, "significant": True}
    compared = [
        {"baseline": "rag", "candidate": "rag+ft", "f1": significant},
        {"baseline": "base", "candidate": "rag+ft", "f1": {**significant, "difference": 45.0, "low": 40.0}},
    ]
    lines = recommend(arms, compared)
    assert "it pays for its training" in "\n".join(lines)
    assert "no sign of overfitting" in "\n".join(lines)
    assert lines[-1] == "Recommended: rag+ft (F1 55.0, the best F1)."


def test_markdown_and_files(tmp_path: Path) -> None:
    built = sample_report()
    markdown = to_markdown(built)
    assert "| rag | 25.0 | 75.0 | 75.0 (0.0) | 0.750 | 0.750 | 250 | 385 | 16.0 | index 12s, 6 chunks |" in markdown
    assert "| base | " in markdown and "## Recommendation" in markdown
    files = write_all(built, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["arms"]["ft"]["f1"] == 20.0
    assert (tmp_path / "report.md").read_text() == markdown
    # the chart is hand-written SVG (no plotting library): always written, never skipped
    assert (tmp_path / "chart.svg").read_text().startswith("<svg ") and files["chart"] == str(tmp_path / "chart.svg")


def test_intervals_and_paired_comparisons() -> None:
    built = sample_report()
    rag = built["arms"]["rag"]
    assert rag["f1_ci"]["low"] <= rag["f1"] <= rag["f1_ci"]["high"] and rag["f1_ci"]["level"] == 0.95
    assert rag["short"]["f1"] == rag["f1"], "rows without short-answer scores count their raw scores"
    pairs = {(c["baseline"], c["candidate"]): c for c in built["comparisons"]}
    assert set(pairs) == {
        ("base", "rag"),
        ("base", "ft"),
        ("rag", "rag+ft"),
        ("ft", "rag+ft"),
        ("base", "rag+ft"),
        ("rag", "ft"),
    }
    assert pairs[("base", "rag")]["f1"]["significant"] and pairs[("base", "rag")]["f1"]["difference"] == 65.0
    assert not pairs[("rag", "rag+ft")]["f1"]["significant"]
    assert pairs[("base", "rag")]["em"]["test"] == "mcnemar-exact" and pairs[("base", "rag")]["questions"] == 4
    assert built == sample_report(), "seeded: the same answers give the same report"


def test_grounding_figures_for_rag_arms() -> None:
    arms = sample_report()["arms"]
    assert "grounding" not in arms["base"]
    grounded = arms["rag"]["grounding"]
    assert grounded["cited_share"] == 1.0 and grounded["questions"] == 4
    # passage [1] holds the gold answer and every answer cites it; no question missed retrieval
    assert grounded["citation_recall"] == 1.0 and grounded["citation_precision"] == 1.0
    assert grounded["abstention_when_missed"] is None, "retrieval never missed: undefined, not 0"


def test_html_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    built = sample_report()
    files = write_all(built, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert files["html"] == str(tmp_path / "report.html") and page.startswith("<!doctype html>")
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert page.count("<svg ") == 3, "quality/latency, forest plot and cost charts"
    assert "question 0 &lt;b&gt;?" in page and "question 0 <b>?" not in page, "dataset text is escaped"
    assert "no detectable difference" in page and "[1]" in page
