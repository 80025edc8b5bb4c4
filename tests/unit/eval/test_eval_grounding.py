"""Groundedness of RAG answers, on small hand-made cases whose right figures are known."""

from __future__ import annotations

import math

import pytest

from ragtune_eval.grounding import abstains, cited, grounding, holds_answer, support

PASSAGES = [
    "The Eiffel Tower is in Paris, the capital of France.",
    "Berlin is the capital of Germany.",
    "Mount Everest is the highest mountain.",
]


def test_citations_are_parsed_in_order_once_and_in_range() -> None:
    assert cited("Paris [1], as [1] and [3] say; not [9] or [0].", 3) == [1, 3]
    assert cited("no citation", 3) == []


def test_a_passage_holds_an_answer_by_whole_normalised_words() -> None:
    assert holds_answer(PASSAGES[0], ["paris"])
    assert not holds_answer(PASSAGES[0], ["par"])  # a word piece is not the answer
    assert holds_answer(PASSAGES[0], ["The capital of France"])


def test_abstentions() -> None:
    assert abstains("I don't know.") and abstains("The passages do not mention it.")
    assert not abstains("Paris [1].")


def test_support_counts_content_words_found_in_the_cited_passages() -> None:
    assert support("Paris is the capital [1].", [PASSAGES[0]]) == 1.0
    assert support("Paris is in Italy [1].", [PASSAGES[0]]) == pytest.approx(0.5)
    assert support("", [PASSAGES[0]]) == 0.0


def test_grounding_figures() -> None:
    answers = [
        "It is in Paris [1].",  # cites the gold passage
        "Berlin [2] and Paris [1].",  # cites one gold, one not
        "I do not know.",  # retrieval missed, and it abstains
        "Everest [2].",  # retrieval missed, it answers anyway (a wrong citation)
    ]
    given = [PASSAGES, PASSAGES, PASSAGES[1:], PASSAGES[1:]]
    gold = [["Paris"], ["Paris"], ["Paris"], ["Paris"]]
    result = grounding(answers, given, gold)
    assert result.citation_recall == 1.0  # both questions with the gold retrieved cited it
    assert result.citation_precision == pytest.approx(2 / 4)  # [1], [2]x, [1], [2 of the rest]x
    assert result.abstention_when_missed == 0.5
    assert result.cited_share == 0.75 and result.questions == 4


def test_no_gold_retrieved_leaves_recall_undefined() -> None:
    result = grounding(["I don't know"], [["nothing here"]], [["Paris"]])
    assert math.isnan(result.citation_recall) and math.isnan(result.citation_precision)
    assert result.abstention_when_missed == 1.0


def test_inputs_must_cover_the_same_questions() -> None:
    with pytest.raises(ValueError, match="same questions"):
        grounding(["a"], [], [["x"]])
