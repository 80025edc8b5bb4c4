"""The optional LLM judge's prompt, how its replies are read, and the shares it reports."""

from __future__ import annotations

import pytest

from ragtune_eval.judge import MAX_PASSAGE_CHARS, judge_prompt, parse_verdict, summarize


def test_the_prompt_shows_numbered_passages_the_gold_answers_and_the_answer() -> None:
    prompt = judge_prompt("Who painted it?", ["Ada painted it.", "x" * 5000], ["Ada", "Ada Vossberg"], " Ada did. ")
    assert "[1] Ada painted it." in prompt and "[2] " + "x" * MAX_PASSAGE_CHARS + "\n" in prompt
    assert "x" * (MAX_PASSAGE_CHARS + 1) not in prompt
    assert "Reference answers: Ada | Ada Vossberg" in prompt and "Answer to grade: Ada did." in prompt
    assert "(none)" in judge_prompt("q", [], ["a"], "b") and "(empty)" in judge_prompt("q", ["p"], ["a"], "  ")


@pytest.mark.parametrize(
    ("reply", "supported", "correct"),
    [
        ("SUPPORTED: yes\nCORRECT: no", True, False),
        ("**Supported**: Yes\n**Correct**: **YES**", True, True),  # markdown emphasis around label or word
        ("supported = no, correct = yes", False, True),
        ("Supported: no.", False, None),
        ("The answer looks right.", None, None),
        ("SUPPORTED: yesterday", None, None),
    ],
)
def test_each_verdict_is_read_or_left_unknown(reply: str, supported: bool | None, correct: bool | None) -> None:
    verdict = parse_verdict(reply)
    assert (verdict.supported, verdict.correct, verdict.reply) == (supported, correct, reply)


def test_shares_count_only_the_questions_the_judge_answered() -> None:
    rows = [
        parse_verdict("SUPPORTED: yes\nCORRECT: yes").as_row("q1"),
        parse_verdict("SUPPORTED: no\nCORRECT: yes").as_row("q2"),
        parse_verdict("no idea").as_row("q3"),
    ]
    assert summarize(rows, "judge-model") == {
        "model": "judge-model",
        "supported": 0.5,
        "correct": 1.0,
        "judged": 3,
        "unreadable": 1,
    }
    assert summarize([], "m")["supported"] is None
