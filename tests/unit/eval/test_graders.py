"""The model-free graders of the Evals dialect: templates, string_check and the text metrics."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragtune_eval import graders


def test_templates_render_item_and_sample_values() -> None:
    context = {"item": {"label": "refund", "slots": {"people": 2}, "tags": ["a", "b"]}, "sample": {"output_text": "x"}}
    assert graders.render("{{ item.label }}/{{sample.output_text}}", context) == "refund/x"
    assert graders.render("{{item.slots}}", context) == '{"people": 2}'
    assert graders.render("{{item.tags.1}} {{item.tags.9}} {{item.nothing.here}}", context) == "b  "
    assert graders.references("{{item.a}} and {{sample.output_json.b}}") == ["item.a", "sample.output_json.b"]


def test_a_template_sees_only_its_namespaces() -> None:
    graders.check_template("{{item.x}} {{sample.output_text}}", sample_allowed=True)
    with pytest.raises(graders.TemplateError, match="item"):
        graders.check_template("{{sample.output_text}}", sample_allowed=False)
    with pytest.raises(graders.TemplateError):
        graders.check_template("{{env.HOME}}", sample_allowed=True)


def test_the_sample_namespace_parses_json_answers() -> None:
    assert graders.sample_namespace('```json\n{"people": 2}\n```')["output_json"] == {"people": 2}
    assert "output_json" not in graders.sample_namespace("NaN")  # not JSON, and not storable as jsonb
    assert "output_json" not in graders.sample_namespace("refund")


@pytest.mark.parametrize(
    ("operation", "value", "reference", "score"),
    [
        ("eq", "refund", "refund", 1.0),
        ("eq", "Refund", "refund", 0.0),
        ("ne", "a", "b", 1.0),
        ("like", "the refund intent", "refund", 1.0),
        ("like", "the REFUND intent", "refund", 0.0),
        ("ilike", "the REFUND intent", "refund", 1.0),
    ],
)
def test_string_check(operation: str, value: str, reference: str, score: float) -> None:
    assert graders.string_check(operation, value, reference) == score


def test_text_metrics_against_hand_computed_values() -> None:
    # ROUGE-1: 2 shared words of 3 and 4: P 2/3, R 2/4, F1 4/7
    assert graders.rouge_n("the cat sat", "the cat is here", 1) == pytest.approx(4 / 7)
    assert graders.rouge_n("the cat sat", "the cat is here", 2) == pytest.approx(
        2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3)
    )
    # LCS of [a b c d] and [a c d e] is a c d: P 3/4, R 3/4
    assert graders.rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert graders.bleu("the quick brown fox jumps", "the quick brown fox jumps") == pytest.approx(1.0)
    assert graders.bleu("nothing shared", "the quick brown fox") == 0.0
    assert graders.gleu("a b", "a b c") == pytest.approx(3 / 6)  # 3 of the reference's 6 n-grams, all 3 of a b's
    assert graders.fuzzy_match("refund", "refunds") == pytest.approx(12 / 13)


def test_grade_item_passes_by_operation_and_threshold() -> None:
    criteria: list[dict[str, Any]] = [
        {"type": "string_check", "name": "eq", "input": "{{sample.output_text}}", "reference": "{{item.y}}",
         "operation": "eq"},
        {"type": "text_similarity", "name": "sim", "input": "{{sample.output_text}}", "reference": "{{item.y}}",
         "evaluation_metric": "fuzzy_match", "pass_threshold": 0.9},
    ]  # fmt: skip
    results = graders.grade_item(criteria, {"y": "refunds"}, {"output_text": "refund"})
    assert [(r["name"], r["passed"]) for r in results] == [("eq", False), ("sim", True)]


@given(st.text(max_size=40), st.text(max_size=40), st.sampled_from(graders.SIMILARITY_METRICS))
def test_every_metric_is_a_score_from_0_to_1(candidate: str, reference: str, metric: str) -> None:
    score = graders.similarity(metric, candidate, reference)
    assert 0.0 <= score <= 1.0 + 1e-9


@given(st.text(max_size=60), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
def test_any_template_renders_without_error(template: str, item: dict[str, str]) -> None:
    assert isinstance(graders.render(template, {"item": item}), str)
