"""The counterfactual edit of the freshness measurement: never the old answer, the passage changed
only at the answer's span, the same kind of value, and the same edits for the same seed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ragtune_eval.dataset import QAItem
from ragtune_eval.freshness_edit import (
    acceptable,
    answer_pool,
    answer_shape,
    answer_template,
    counterfactual,
    edit_passage,
    editable,
    mentions,
    plan_edits,
)
from ragtune_eval.scoring import normalize_answer

ITEMS = [
    QAItem("y1", "When was the bridge built?", ("1932",), "The old bridge was built in 1932 by the city."),
    QAItem("y2", "When did the mill close?", ("1871",), "The mill closed in 1871 after a fire."),
    QAItem("y3", "When was the port opened?", ("1905",), "Trade grew after the port opened in 1905."),
    QAItem("n1", "How many towers?", ("12 towers", "12"), "The wall had 12 towers and two gates."),
    QAItem("n2", "How many ships?", ("40 ships",), "A fleet of 40 ships sailed in spring."),
    QAItem("p1", "Who founded the school?", ("Anna Weber",), "The school was founded by Anna Weber, a teacher."),
    QAItem("p2", "Who led the band?", ("Carl Moser",), "Carl Moser led the band for a decade."),
    QAItem("p3", "Who painted it?", ("Rosa Klein",), "It was painted by Rosa Klein in oils."),
    QAItem("f1", "What did they grow?", ("winter wheat",), "Farmers there grew winter wheat on the slopes."),
    QAItem("f2", "What was traded?", ("salted fish",), "Merchants traded salted fish with the north."),
    QAItem("s1", "Same passage?", ("two gates",), "The wall had 12 towers and two gates."),
]
POOL = answer_pool(ITEMS)


def test_shapes_and_forms() -> None:
    assert [answer_shape(a) for a in ("1932", "12 towers", "Ten", "March 3, 1901", "Anna Weber", "winter wheat")] == [
        "year",
        "number",
        "number",
        "date",
        "name",
        "phrase",
    ]
    assert answer_template("$465 million") == answer_template("$3.5 billion") == "$# #"
    assert answer_template("January 7, 2016") == "<month> #, #"


def test_plan_edits_changes_each_fact_once_with_a_value_of_its_kind() -> None:
    edits = plan_edits(ITEMS, POOL, count=20, seed=3)
    assert 0 < len(edits) <= 10  # n1 and s1 share a passage: at most one of them is edited
    assert len({e.old_item.context_id for e in edits}) == len(edits)
    for edit in edits:
        assert edit.shape == answer_shape(edit.old_answers[0]) == answer_shape(edit.new_answer)
        assert all(normalize_answer(edit.new_answer) != normalize_answer(a) for a in edit.old_answers)
        start, old, new = edit.start, edit.old_answers[0], edit.new_answer
        assert edit.new_context == edit.old_context[:start] + new + edit.old_context[start + len(old) :]
        assert mentions(edit.new_context, new) and not any(mentions(edit.new_context, a) for a in edit.old_answers)
        assert not mentions(edit.old_context, new)
    assert plan_edits(ITEMS, POOL, count=20, seed=3) == edits  # seeded
    assert plan_edits(list(reversed(ITEMS)), POOL, count=20, seed=3) == edits  # not the input's order


def test_items_that_cannot_be_edited_cleanly_are_left_out() -> None:
    twice = QAItem("t", "Which city?", ("Bern",), "Bern is the capital; Bern lies on the Aare.")
    asked = QAItem("a", "Was it built in 1932 or later?", ("1932",), "It was built in 1932.")
    inside = QAItem("i", "What year?", ("193",), "It was built in 1932.")
    assert not editable(twice) and not editable(asked) and not editable(inside)
    assert editable(ITEMS[0])
    assert counterfactual(ITEMS[0], {"year": ["1932"]}, seed=0) is None  # only the old value on offer
    assert not acceptable(ITEMS[3], "12")  # a bare variant of the old answer
    assert acceptable(ITEMS[3], "40 ships")


def test_edit_passage_refuses_a_span_that_is_not_there() -> None:
    try:
        edit_passage("abc", 1, "x", "y")
    except ValueError:
        return
    raise AssertionError("edit_passage accepted a span the passage does not hold")


words = st.text(alphabet="abcdefghij", min_size=2, max_size=6)


@settings(max_examples=150, deadline=None)
@given(
    before=st.lists(words, max_size=8),
    after=st.lists(words, max_size=8),
    answer=st.lists(words, min_size=1, max_size=3),
    candidates=st.lists(st.lists(words, min_size=1, max_size=3), min_size=1, max_size=6),
    seed=st.integers(0, 10**6),
)
def test_any_counterfactual_is_new_and_changes_only_the_span(
    before: list[str], after: list[str], answer: list[str], candidates: list[list[str]], seed: int
) -> None:
    old = " ".join(answer)
    context = " ".join([*before, old, *after]) + "."
    item = QAItem("x", "What is it?", (old,), context)
    pool = answer_pool(QAItem(f"c{i}", "q", (" ".join(c),)) for i, c in enumerate(candidates))
    if not editable(item):
        return
    new = counterfactual(item, pool, seed)
    if new is None:
        return
    assert counterfactual(item, pool, seed) == new
    assert normalize_answer(new) != normalize_answer(old)
    assert not set(normalize_answer(new).split()) & set(normalize_answer(old).split())
    start = len(" ".join([*before, ""])) if before else 0
    edited = edit_passage(context, start, old, new)
    assert edited[:start] == context[:start]
    assert edited[start + len(new) :] == context[start + len(old) :]
    assert mentions(edited, new)
