"""RAFT assembly: distractor choice, the seeded no-gold fraction, prompt layout."""

from __future__ import annotations

import json

from ragtune_trainer.raft import Passage, RaftItem, example_line, no_gold_indices, pick_distractors, user_prompt
from ragtune_trainer.training import EarlyStopping


def test_distractors_skip_the_gold_passage_its_document_and_duplicates():
    hits = [
        Passage("gold-doc", "Other chunk of the gold document."),
        Passage("a", "The  gold passage itself."),
        Passage("b", "Distractor one."),
        Passage("c", "distractor ONE."),
        Passage("d", "Distractor two."),
        Passage("e", "Distractor three."),
    ]
    assert pick_distractors(hits, "The gold passage itself.", "gold-doc", 2) == ["Distractor one.", "Distractor two."]


def test_no_gold_fraction_is_seeded():
    chosen = no_gold_indices(10, 0.2, seed=4)
    assert len(chosen) == 2 and chosen == no_gold_indices(10, 0.2, seed=4)
    assert no_gold_indices(10, 0.0, seed=4) == set()


def test_example_holds_gold_among_distractors_or_only_distractors():
    item = RaftItem("Q?", "A.")
    with_gold = json.loads(example_line(item, "GOLD", ["d1", "d2"], True, 1, "sys"))
    system, user, assistant = with_gold["messages"]
    assert (system["content"], assistant["content"]) == ("sys", "A.")
    assert user["content"].startswith("Documents:\n[1] ") and user["content"].count("\n\n[") == 2
    assert "GOLD" in user["content"] and user["content"].endswith("Question: Q?")
    without = json.loads(example_line(item, "GOLD", ["d1", "d2"], False, 1, "sys"))
    assert "GOLD" not in without["messages"][1]["content"]
    assert user_prompt("Q?", ["x", "y"]) == "Documents:\n[1] x\n\n[2] y\n\nQuestion: Q?"


def test_early_stopping_counts_evaluations_without_improvement():
    stopping = EarlyStopping(emit=lambda kind, data: None, patience=2)
    assert [stopping.observe(loss) for loss in (3.0, 2.0, 2.5, 1.5, 1.6, 1.7)] == [
        False,
        False,
        False,
        False,
        False,
        True,
    ]
