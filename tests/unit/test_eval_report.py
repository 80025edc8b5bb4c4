"""The evaluation report: figures from stored answers, costs per arm, the recommendation read off
the numbers, Markdown, and the chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ragtune_eval.report import build_report, recommend, to_markdown, write_all

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
                "em": float(f1 == 1.0),
                "f1": f1,
                "latency_s": 0.1 * (i + 1),
                "prompt_tokens": 50,
                "completion_tokens": 4,
            }
            if retrieval:
                row.update(hit_at_k=float(i != 0), recall_at_k=float(i != 0), answer_in_passages=1.0)
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
    assert "Retrieval adds +65.0 F1" in text
    assert "ft: train F1 exceeds held-out F1 by 80.0 points" in text and "overfitting" in text
    # rag+ft is 1.25 F1 above rag: level, and rag is cheaper
    assert lines[-1].startswith("Recommended: rag (F1 75.0")


def test_recommendation_picks_a_clear_winner() -> None:
    arms: dict[str, dict[str, Any]] = {
        "base": {"f1": 10.0, "train_minus_test_f1": 0.0},
        "rag": {"f1": 40.0, "train_minus_test_f1": 0.0, "retrieval": {"hit_at_k": 0.9}},
        "rag+ft": {"f1": 55.0, "train_minus_test_f1": 3.0},
    }
    lines = recommend(arms)
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
