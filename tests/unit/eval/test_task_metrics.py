"""Per-answer scores and their sums per task type: classification (label reading, accuracy,
macro-F1, most-confused pairs), extraction (tolerant JSON parsing, field pairs, schema), answer
format (the declared mark, numbers normalised)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragtune_eval.task_metrics import (
    NO_LABEL,
    classification_summary,
    extraction_summary,
    macro_f1,
    normalize_final,
    parse_object,
    read_label,
    score_answer,
    score_classification,
    score_extraction,
)

LABELS = ("Refund_not_showing_up", "card_arrival", "negative")


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("card_arrival", "card_arrival"),
        ("Card arrival.", "card_arrival"),
        ('"card-arrival"\nBecause the card...', "card_arrival"),
        ("Label: refund not showing up", "Refund_not_showing_up"),
        ("**negative**", "negative"),
        ("\n\n  negative  ", "negative"),
        ("The card has not arrived", None),
        ("card_arrival or negative", None),
        ("", None),
    ],
)
def test_the_label_is_the_first_line_normalised(answer: str, label: str | None) -> None:
    assert read_label(answer, LABELS) == label


def test_classification_sums() -> None:
    gold_and_answer = [
        ("a", "a"),
        ("a", "a"),
        ("a", "b"),
        ("b", "b"),
        ("b", "nonsense"),
        ("c", "b"),
    ]
    rows = [{"gold": g, **score_classification(p, g, ("a", "b", "c"))} for g, p in gold_and_answer]
    found = classification_summary(rows)
    assert found["accuracy"] == 50.0 and found["valid_share"] == round(5 / 6, 4)
    # F1: a = 2*(1*2/3)/(1+2/3) = 0.8; b = P 1/3 R 1/2 -> 0.4; c = 0
    assert found["macro_f1"] == 40.0
    assert macro_f1([(r["gold"], r["predicted"]) for r in rows]) == pytest.approx(40.0)
    assert macro_f1([]) is None and macro_f1([("a", None)]) == 0.0
    assert found["most_confused"][0]["count"] == 1
    assert {(p["gold"], p["predicted"]) for p in found["most_confused"]} == {("a", "b"), ("b", NO_LABEL), ("c", "b")}


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('{"a": "1"}', {"a": "1"}),
        ('```json\n{"a": "1"}\n```', {"a": "1"}),
        ('Here you go: {"a": "1"} hope it helps', {"a": "1"}),
        ("[1, 2]", None),
        ("{not json}", None),
        ("", None),
    ],
)
def test_the_object_is_found_in_the_answer(text: str, found: dict | None) -> None:
    assert parse_object(text) == found


SCHEMA = {"people": "string", "time": "string", "person": "list"}


def test_extraction_scores_field_pairs() -> None:
    gold = {"people": "4", "time": "7pm"}
    perfect = score_extraction('{"time": "7 PM.", "people": "4"}', gold, SCHEMA)
    assert (perfect["score"], perfect["exact"]) == (0.5, 0.0)  # "7 pm" is not "7pm": values are compared as text
    same = score_extraction('```json\n{"time": "7pm", "people": "4"}\n```', gold, SCHEMA)
    assert (same["score"], same["exact"], same["parsed"], same["valid"]) == (1.0, 1.0, 1.0, 1.0)
    half = score_extraction('{"people": 4, "date": "today"}', gold, SCHEMA)
    assert half["score"] == pytest.approx(0.5) and half["exact"] == 0.0  # the number 4 reads as "4"
    assert half["valid"] == 0.0 and half["parsed"] == 1.0  # "date" is no field, 4 no string
    assert half["fields"] == {"people": [1, 0, 0], "time": [0, 0, 1], "date": [0, 1, 0]}
    prose = score_extraction("I cannot help", {}, SCHEMA)
    assert (prose["score"], prose["exact"], prose["parsed"]) == (0.0, 0.0, 0.0)  # prose is no empty object
    none = score_extraction("{}", {}, SCHEMA)
    assert (none["score"], none["exact"], none["parsed"]) == (1.0, 1.0, 1.0)  # nothing to find, nothing found
    entities = score_extraction('{"person": ["Ann", "bob"]}', {"person": ["Ann", "Bob", "Cy"]}, SCHEMA)
    assert entities["score"] == pytest.approx(0.8) and entities["valid"] == 1.0
    summed = extraction_summary([same, half, entities])
    assert summed["micro"] == {"precision": 83.33, "recall": 71.43, "f1": 76.92}  # tp 5, fp 1, fn 2
    assert summed["per_field"]["person"] == {"precision": 100.0, "recall": 66.67, "f1": 80.0, "gold": 3}
    assert summed["parse_share"] == 1.0 and summed["exact"] == round(100 / 3, 2)


@pytest.mark.parametrize(
    ("answer", "score", "format_ok", "lenient"),
    [
        ("She has 3 + 4 = 7 apples.\n#### 7", 1.0, 1.0, 1.0),
        ("#### $1,000.00", 0.0, 1.0, 0.0),
        ("so 7 apples\n#### 7 apples", 1.0, 1.0, 1.0),  # the first number after the mark
        ("The answer is 7", 0.0, 0.0, 1.0),
        ("#### 8\nactually 7", 0.0, 1.0, 1.0),
    ],
)
def test_answer_format(answer: str, score: float, format_ok: float, lenient: float) -> None:
    found = score_answer(answer, "3 + 4 = <<3+4=7>>7\n#### 7", "####")
    assert (found["score"], found["format_ok"], found["lenient"]) == (score, format_ok, lenient)


@pytest.mark.parametrize(
    ("text", "canonical"), [("1,000", "1000"), ("$18", "18"), ("18.50", "18.5"), ("-3.0", "-3"), ("Paris", "paris")]
)
def test_numbers_are_normalised(text: str, canonical: str) -> None:
    assert normalize_final(text) == canonical


@given(text=st.text(max_size=60))
def test_scoring_never_fails_on_any_answer(text: str) -> None:
    score_classification(text, "a", ("a", "b"))
    score_extraction(text, {"people": "2"}, SCHEMA)
    score_answer(text, "#### 5", "####")


@pytest.mark.parametrize(
    ("answer", "lenient"),
    [
        ('The correct answer is "card_arrival"', 1.0),
        ("It is about card arrival, I think.", 1.0),
        ("card_arrival or negative", 0.0),  # two labels named: no reading
        ("the card has not arrived", 0.0),
    ],
)
def test_the_lenient_reading_takes_the_one_label_named(answer: str, lenient: float) -> None:
    found = score_classification(answer, "card_arrival", LABELS)
    assert found["lenient"] == lenient and found["score"] == 0.0
